"""``slime-def data``: inspect, import and build embedding datasets."""

from __future__ import annotations

import click

from slime_def.cli import LazyGroup

DATA_COMMANDS = {
    "build": "slime_def.cli.data_build:build",
    "build-default": "slime_def.cli.data_build:build_default",
}


@click.group(cls=LazyGroup, lazy_commands=DATA_COMMANDS)
def data() -> None:
    """Inspect, import and build embedding datasets."""
