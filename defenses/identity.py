"""The no-op defense: the ceiling every leakage score is measured against."""

from __future__ import annotations

import jax.numpy as jnp

from slime_def.defenses.base import EMPTY_STATE, Defense, float_bytes, register_defense


@register_defense(
    "none",
    family="none",
    summary="No defense: the stored vectors are shared as they are (the leakage ceiling).",
    identity={},
)
def none() -> Defense:
    """Return the identity defense; ``apply`` returns its input as float32."""

    def fit(x, *, key):
        del x, key
        return EMPTY_STATE

    def apply(state, x, *, key):
        del state, key
        return jnp.asarray(x, jnp.float32)

    def describe(dim: int) -> dict:
        return {"output_dim": int(dim), "expected_cosine": 1.0, "bytes_per_vector": float_bytes(dim)}

    return Defense("none", fit, apply, describe)
