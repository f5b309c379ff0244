"""Additive noise defenses without a privacy guarantee: Gaussian and Laplace.

Both add independent noise to every coordinate of a unit vector and, by
default, renormalise the result to unit length. Their strength is a noise scale
in the units of the coordinates of a unit-norm vector; the DP mechanisms in
:mod:`slime_def.defenses.dp` calibrate the same kinds of noise from a privacy budget.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from slime_def.defenses.base import (
    EMPTY_STATE,
    Defense,
    check_range,
    float_bytes,
    l2_normalize,
    register_defense,
)
from slime_def.defenses.expected_cosine import (
    gaussian_cosine_approximation,
    gaussian_expected_cosine,
    gaussian_sigma_for_cosine,
)
from slime_def.errors import ParameterError


class _DefaultSigma(float):
    """The default ``sigma``: a distinct object, so an explicit ``sigma`` next to ``cosine`` is detected."""


DEFAULT_SIGMA = _DefaultSigma(0.02)


def check_flag(name: str, value) -> None:
    """Raise :class:`ParameterError` unless ``value`` is True or False."""
    if not isinstance(value, bool):
        raise ParameterError(f"{name} must be True or False, got {value!r}")


def fit_stateless(x, *, key):
    """Return :data:`EMPTY_STATE`: the ``fit`` of defenses that learn nothing from data."""
    del x, key
    return EMPTY_STATE


def add_noise(x: jax.Array, noise: jax.Array, renormalize: bool) -> jax.Array:
    """Return ``x + noise`` as float32, scaled back to unit rows if ``renormalize``."""
    noisy = jnp.asarray(x, jnp.float32) + noise
    return l2_normalize(noisy) if renormalize else noisy


@register_defense(
    "gaussian",
    family="noise",
    summary="Add N(0, sigma^2) to every coordinate, then renormalise.",
    units={
        "sigma": "per-coordinate standard deviation on unit-norm input",
        "cosine": "target expected cosine to the input, in (0, 1]; replaces sigma",
        "renormalize": "scale outputs back to unit L2 norm (True/False)",
    },
    identity={"sigma": 0.0},
    randomness="apply",
)
def gaussian(sigma: float | None = DEFAULT_SIGMA, cosine: float | None = None,
             renormalize: bool = True) -> Defense:
    """Add isotropic Gaussian noise ``x + sigma * N(0, I)``, then renormalise.

    The standard noise-addition baseline for embedding privacy (as in the
    Gaussian mechanism of Dwork and Roth, "The Algorithmic Foundations of
    Differential Privacy", 2014, here without a privacy calibration).

    Give exactly one strength. ``sigma`` is the per-coordinate standard deviation
    for a unit-norm input. ``cosine`` is the target expected cosine between input
    and output, in (0, 1]. It is turned into sigma at the data's dimension ``d`` by
    solving the exact expected cosine numerically, whose large-``d`` form is
    ``1 / sqrt(1 + d sigma^2)``. ``sigma=0`` or ``cosine=1`` is the identity.

    Args:
      sigma: noise standard deviation per coordinate, >= 0; default 0.02.
      cosine: target expected cosine, in (0, 1]; when given, leave ``sigma`` unset.
      renormalize: scale each output back to unit L2 norm.

    Returns:
      A defense mapping ``(B, d)`` to ``(B, d)`` float32.

    Raises:
      ParameterError: both or neither of ``sigma`` and ``cosine`` given, or a value out of range.
    """
    sigma_given = sigma is not None and sigma is not DEFAULT_SIGMA
    if sigma_given and cosine is not None:
        raise ParameterError(
            f"give either sigma or cosine for gaussian, not both (got sigma={sigma!r}, cosine={cosine!r})"
        )
    if sigma is None and cosine is None:
        raise ParameterError("gaussian needs sigma (>= 0) or cosine (in (0, 1]); both are None")
    if cosine is not None:
        check_range("cosine", cosine, low=0.0, high=1.0, low_open=True,
                    hint="; the expected cosine between input and output lies in (0, 1]")
    else:
        check_range("sigma", sigma, low=0.0, hint="; sigma is a standard deviation")
    check_flag("renormalize", renormalize)

    def sigma_at(dim: int) -> float:
        if cosine is None:
            return float(sigma)
        return gaussian_sigma_for_cosine(float(cosine), int(dim))

    def apply(state, x, *, key):
        del state
        scale = sigma_at(x.shape[-1])
        noise = scale * jax.random.normal(key, x.shape, jnp.float32)
        return add_noise(x, noise, renormalize)

    def describe(dim: int) -> dict:
        scale = sigma_at(dim)
        return {
            "output_dim": int(dim),
            "expected_cosine": gaussian_expected_cosine(scale, int(dim)),
            "bytes_per_vector": float_bytes(dim),
            "sigma": scale,
            "cosine_approximation": gaussian_cosine_approximation(scale, int(dim)),
        }

    return Defense("gaussian", fit_stateless, apply, describe)


@register_defense(
    "laplace",
    family="noise",
    summary="Add Laplace(0, scale) noise to every coordinate, then renormalise.",
    units={
        "scale": "Laplace scale b per coordinate on unit-norm input; std is sqrt(2) b",
        "renormalize": "scale outputs back to unit L2 norm (True/False)",
    },
    identity={"scale": 0.0},
    randomness="apply",
)
def laplace(scale: float = 0.01, renormalize: bool = True) -> Defense:
    """Add independent Laplace noise with scale ``b`` to every coordinate, then renormalise.

    The per-coordinate Laplace mechanism (Dwork, McSherry, Nissim and Smith,
    "Calibrating Noise to Sensitivity in Private Data Analysis", TCC 2006), here
    with a fixed scale and no privacy calibration. The noise density per
    coordinate is ``exp(-|z| / b) / (2 b)``, so its standard deviation is
    ``sqrt(2) b``. ``scale=0`` is the identity.

    Args:
      scale: Laplace scale ``b`` per coordinate, >= 0, for unit-norm input.
      renormalize: scale each output back to unit L2 norm.

    Returns:
      A defense mapping ``(B, d)`` to ``(B, d)`` float32.
    """
    check_range("scale", scale, low=0.0, hint="; the Laplace scale b is a width")
    check_flag("renormalize", renormalize)

    def apply(state, x, *, key):
        del state
        noise = float(scale) * jax.random.laplace(key, x.shape, jnp.float32)
        return add_noise(x, noise, renormalize)

    def describe(dim: int) -> dict:
        noise_std = math.sqrt(2.0) * float(scale)
        # NOTE: Laplace noise is not isotropic, so the exact expected cosine depends on
        # the input's direction; the Gaussian value at the same per-coordinate std is
        # its large-d limit (within 1e-3 of simulation at d = 1280 in the tests).
        return {
            "output_dim": int(dim),
            "expected_cosine": gaussian_expected_cosine(noise_std, int(dim)),
            "bytes_per_vector": float_bytes(dim),
            "scale": float(scale),
            "noise_std": noise_std,
        }

    return Defense("laplace", fit_stateless, apply, describe)
