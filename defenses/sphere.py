"""Random directions on the unit sphere, in JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from slime_def.defenses.base import l2_normalize


def uniform_directions(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Draw unit vectors uniformly on the sphere.

    Args:
      key: PRNG key.
      shape: ``(..., d)``; each vector along the last axis is one direction.

    Returns:
      float32 array of ``shape`` with unit rows (a normalised standard normal,
      which is rotation invariant and therefore uniform on the sphere).
    """
    return l2_normalize(jax.random.normal(key, shape, jnp.float32))


def orthogonal_directions(key: jax.Array, x: jax.Array) -> jax.Array:
    """Draw, for each unit row of ``x`` (B, d), a unit vector uniform on the sphere orthogonal to it.

    Projecting an isotropic Gaussian onto the hyperplane orthogonal to ``x``
    gives an isotropic Gaussian in that hyperplane, so its direction is uniform there.
    """
    gaussian = jax.random.normal(key, x.shape, jnp.float32)
    along = jnp.sum(gaussian * x, axis=-1, keepdims=True)
    return l2_normalize(gaussian - along * x)
