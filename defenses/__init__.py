"""Embedding defenses: noise, differential privacy, quantization and projections.

Importing this package registers every built-in defense in :data:`DEFENSES`.
Build one from a spec string with :func:`make_defense`.
"""

from slime_def.defenses.base import (
    DEFENSES,
    EMPTY_STATE,
    Defense,
    DefenseEntry,
    chain,
    make_defense,
    register_defense,
)
from slime_def.defenses import identity  # noqa: F401  registers "none"

__all__ = [
    "DEFENSES",
    "EMPTY_STATE",
    "Defense",
    "DefenseEntry",
    "chain",
    "make_defense",
    "register_defense",
]
