"""The ``slime-def`` command line: a thin Click layer over the Python API.

Subcommands live in their own modules and are imported only when invoked, so
``slime-def --help`` stays fast and a command that needs no JAX never imports it.
"""

from __future__ import annotations

import importlib
import logging

import click

from slime_def import __version__
from slime_def.errors import SlimeDefError

# command name -> "module:attribute"
COMMANDS = {
    "data": "slime_def.cli.data:data",
    "defenses": "slime_def.cli.defenses:defenses",
    "eval": "slime_def.cli.eval:eval_command",
    "sweep": "slime_def.cli.sweep:sweep",
    "plot": "slime_def.cli.plot:plot",
    "report": "slime_def.cli.report:report",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use.

    Args:
      lazy_commands: command name to ``"module:attribute"``.
    """

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx):
        names = set(super().list_commands(ctx))
        names |= {name for name in self.lazy_commands if self.get_command(ctx, name) is not None}
        return sorted(names)

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None or name not in self.lazy_commands:
            return command
        module_name, attribute = self.lazy_commands[name].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # command not built yet in this checkout
            raise
        return getattr(module, attribute)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SlimeDefError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="slime-def")
@click.option("-v", "--verbose", count=True, help="Log more: -v for info, -vv for debug.")
def main(verbose: int) -> None:
    """Measure how much meaning the SLImE attack reads from defended image embeddings."""
    levels = {0: logging.WARNING, 1: logging.INFO}
    level = levels.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
