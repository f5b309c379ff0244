"""Differential-privacy mechanisms for embedding vectors: Gaussian and d_chi (multivariate Laplace).

Each mechanism protects every stored vector on its own, as local DP: any two
unit vectors are neighbours, so the L2 sensitivity is their largest distance,
2. Releasing several vectors derived from the same image composes their budgets.
Outputs are renormalised to unit length by default. Renormalising is
post-processing, so the guarantee is the same with or without it. The Purkayastha mechanism for unit
vectors lives in :mod:`slime_def.defenses.purkayastha`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from scipy import stats

from slime_def.defenses.analytic_gaussian import analytic_gaussian_sigma, classic_gaussian_sigma
from slime_def.defenses.base import Defense, check_range, float_bytes, register_defense
from slime_def.defenses.expected_cosine import gaussian_expected_cosine, isotropic_expected_cosine
from slime_def.defenses.noise import fit_stateless, add_noise, check_flag
from slime_def.defenses.sphere import uniform_directions


def check_epsilon(epsilon) -> None:
    """Raise :class:`ParameterError` unless ``epsilon`` is a finite number > 0."""
    check_range("epsilon", epsilon, low=0.0, low_open=True, high=math.inf, high_open=True,
                hint="; the privacy budget epsilon is a finite positive number")


@register_defense(
    "gaussian_dp",
    family="dp",
    summary="(epsilon, delta)-DP Gaussian mechanism, calibrated exactly (analytic Gaussian mechanism).",
    units={
        "epsilon": "privacy loss bound per vector (natural log of the likelihood ratio)",
        "delta": "probability that the epsilon bound fails, in (0, 1)",
        "sensitivity": "L2 sensitivity: the largest distance between two inputs (2 for unit vectors)",
        "renormalize": "scale outputs back to unit L2 norm (True/False; post-processing)",
    },
    example={"epsilon": 1000.0, "delta": 1e-5},
    randomness="apply",
)
def gaussian_dp(epsilon: float, delta: float, sensitivity: float = 2.0,
                renormalize: bool = True) -> Defense:
    """Add ``N(0, sigma^2 I)`` with sigma calibrated to (epsilon, delta)-DP per vector.

    Sigma is the smallest value allowed by the analytic Gaussian mechanism of
    Balle and Wang (ICML 2018), exact for every epsilon; see
    :mod:`slime_def.defenses.analytic_gaussian`. ``describe`` also reports the
    classic ``sensitivity * sqrt(2 ln(1.25/delta)) / epsilon`` for comparison: it
    is larger than needed for epsilon < 1 and too small (not private) well above 1.

    Useful settings depend on ``d``: sigma does not depend on it, but the cosine
    to the input falls like ``1 / sqrt(1 + d sigma^2)``. At d = 1280 and delta = 1e-5,
    the expected cosine is about 0.03 at epsilon = 10, 0.15 at 100 and 0.49 at 1000.

    Args:
      epsilon: privacy loss bound, > 0.
      delta: failure probability, in (0, 1).
      sensitivity: L2 sensitivity, > 0; 2 for arbitrary unit vectors.
      renormalize: scale each output back to unit L2 norm.

    Returns:
      A defense mapping ``(B, d)`` to ``(B, d)`` float32.
    """
    check_epsilon(epsilon)
    check_range("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True,
                hint="; use a delta well below 1 / (number of vectors), e.g. 1e-5")
    check_range("sensitivity", sensitivity, low=0.0, low_open=True, high=math.inf, high_open=True,
                hint="; it is the largest L2 distance between two inputs, 2 for unit vectors")
    check_flag("renormalize", renormalize)
    sigma = analytic_gaussian_sigma(float(epsilon), float(delta), float(sensitivity))

    def apply(state, x, *, key):
        del state
        noise = sigma * jax.random.normal(key, x.shape, jnp.float32)
        return add_noise(x, noise, renormalize)

    def describe(dim: int) -> dict:
        return {
            "output_dim": int(dim),
            "expected_cosine": gaussian_expected_cosine(sigma, int(dim)),
            "bytes_per_vector": float_bytes(dim),
            "sigma": sigma,
            "classic_sigma": classic_gaussian_sigma(float(epsilon), float(delta), float(sensitivity)),
            "epsilon": float(epsilon),
            "delta": float(delta),
        }

    return Defense("gaussian_dp", fit_stateless, apply, describe)


@register_defense(
    "dchi",
    family="dp",
    summary="Metric-DP multivariate Laplace: uniform direction, Gamma(d, 1/epsilon) radius.",
    units={
        "epsilon": "privacy loss per unit of L2 distance between inputs (epsilon * ||x - x'||)",
        "renormalize": "scale outputs back to unit L2 norm (True/False; post-processing)",
    },
    example={"epsilon": 5000.0},
    randomness="apply",
)
def dchi(epsilon: float, renormalize: bool = True) -> Defense:
    """Add multivariate Laplace noise with density proportional to ``exp(-epsilon ||z||_2)``.

    The d_chi-privacy mechanism for vectors (Chatzikokolakis, Andres, Bordenabe
    and Palamidessi, "Broadening the Scope of Differential Privacy Using
    Metrics", PETS 2013), used on embeddings by Feyisetan, Balle, Drake and Diethe
    (WSDM 2020). In spherical coordinates the noise radius has density
    proportional to ``r^(d-1) exp(-epsilon r)``, that is Gamma(shape=d,
    scale=1/epsilon) with mean ``d / epsilon``, and its direction is uniform.

    The output distributions for inputs ``x`` and ``x'`` differ by at most a
    factor ``exp(epsilon ||x - x'||)``, so on unit vectors this is pure
    ``2 epsilon``-DP. Useful settings scale with ``d``: the noise norm is about
    ``d / epsilon``: at d = 1280 the expected cosine is about 0.62 at epsilon = 1000
    and 0.97 at epsilon = 5000.

    Args:
      epsilon: privacy loss per unit of L2 distance, > 0.
      renormalize: scale each output back to unit L2 norm.

    Returns:
      A defense mapping ``(B, d)`` to ``(B, d)`` float32.
    """
    check_epsilon(epsilon)
    check_flag("renormalize", renormalize)

    def apply(state, x, *, key):
        del state
        radius_key, direction_key = jax.random.split(key)
        # Gamma(d, 1) with integer d is exactly a sum of d standard exponentials. This
        # costs as much as the direction and avoids compiling JAX's rejection sampler.
        radius = jnp.sum(jax.random.exponential(radius_key, x.shape, jnp.float32), axis=-1, keepdims=True)
        noise = radius / float(epsilon) * uniform_directions(direction_key, x.shape)
        return add_noise(x, noise, renormalize)

    def describe(dim: int) -> dict:
        scale = 1.0 / float(epsilon)
        cosine = isotropic_expected_cosine(lambda q: stats.gamma.ppf(q, dim, scale=scale), int(dim))
        return {
            "output_dim": int(dim),
            "expected_cosine": cosine,
            "bytes_per_vector": float_bytes(dim),
            "mean_noise_norm": dim * scale,
            "epsilon": float(epsilon),
        }

    return Defense("dchi", fit_stateless, apply, describe)
