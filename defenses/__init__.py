"""Embedding defenses: noise, differential privacy, quantization and projections.

Importing this package registers every built-in defense in :data:`DEFENSES`.
Build one from a spec string with :func:`make_defense`.
"""

from slime_def.defenses.base import (
    DEFENSES,
    EMPTY_STATE,
    Defense,
    DefenseEntry,
    available_defenses,
    chain,
    make_defense,
    register_defense,
)
from slime_def.defenses import identity  # noqa: F401  registers "none"
from slime_def.defenses import noise  # noqa: F401  registers "gaussian", "laplace"
from slime_def.defenses import dp  # noqa: F401  registers "gaussian_dp", "dchi"
from slime_def.defenses import purkayastha  # noqa: F401  registers "purkayastha"
from slime_def.defenses import quantize  # noqa: F401  registers "quantize", "binary", "pq"
from slime_def.defenses import projection  # noqa: F401  registers the dimensionality defenses

__all__ = [
    "DEFENSES",
    "EMPTY_STATE",
    "Defense",
    "DefenseEntry",
    "available_defenses",
    "chain",
    "make_defense",
    "register_defense",
]
