"""The Purkayastha mechanism: directional differential privacy for unit vectors.

Weggenmann and Kerschbaum, "Differential Privacy for Directional Data", ACM CCS
2021. The output ``y`` lies on the unit sphere with density, with respect to the
surface measure, proportional to ``exp(-epsilon * theta(x, y))``, where
``theta(x, y) = arccos(<x, y>)`` is the angle to the input ``x``. By the triangle
inequality for angles, the densities for inputs ``x`` and ``x'`` differ by at most
a factor ``exp(epsilon * theta(x, x'))``, so the mechanism is epsilon-private
per radian of angle, and pure ``pi * epsilon``-DP over the whole sphere.

Sampling: the surface of the sphere at angle ``theta`` from ``x`` has measure
proportional to ``sin(theta)^(d-2)``, so the angle has density proportional to

    p(theta) = exp(-epsilon theta) sin(theta)^(d-2),   0 <= theta <= pi,

and given the angle, the output direction orthogonal to ``x`` is uniform. This
density is extremely peaked at large ``d`` (at d = 1280 and epsilon = 1e5 its
width is about 4e-4 rad), so the angle is drawn by inverting its CDF on a fine
grid that covers only where the log density is within 60 nats of its peak.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from slime_def.defenses.base import Defense, float_bytes, l2_normalize, register_defense
from slime_def.defenses.dp import check_epsilon
from slime_def.defenses.noise import fit_stateless
from slime_def.defenses.sphere import orthogonal_directions
from slime_def.errors import ParameterError

_LOG_DENSITY_DROP = 60.0  # nats; the mass left outside the grid is below exp(-60) relative to the peak
_GRID_POINTS = 8193


def log_angle_density(theta: np.ndarray, epsilon: float, dim: int) -> np.ndarray:
    """Return the unnormalised log density of the angle, ``-epsilon theta + (d-2) log sin theta``."""
    theta = np.asarray(theta, dtype=np.float64)
    if dim == 2:
        return -epsilon * theta
    with np.errstate(divide="ignore"):
        return -epsilon * theta + (dim - 2) * np.log(np.sin(theta))


def angle_mode(epsilon: float, dim: int) -> float:
    """Return the most likely angle, where ``epsilon = (d-2) cot(theta)``."""
    return math.atan2(dim - 2, epsilon)


def _bisect_level(epsilon: float, dim: int, level: float, inside: float, outside: float) -> float:
    """Find where the (concave) log density crosses ``level`` between ``inside`` and ``outside``."""
    for _ in range(200):
        middle = 0.5 * (inside + outside)
        if log_angle_density(middle, epsilon, dim) >= level:
            inside = middle
        else:
            outside = middle
    return outside


@functools.lru_cache(maxsize=64)
def angle_grid(epsilon: float, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Return a grid of angles (radians) and the angle's CDF on it, both float64.

    The grid spans the interval where the log density is within 60 nats of its
    maximum, clipped to [0, pi]. The CDF is the trapezoidal integral of the
    density, normalised to end at 1.
    """
    mode = angle_mode(epsilon, dim)
    peak = float(log_angle_density(mode, epsilon, dim))
    level = peak - _LOG_DENSITY_DROP

    low = 0.0
    if log_angle_density(0.0, epsilon, dim) < level:
        low = _bisect_level(epsilon, dim, level, inside=mode, outside=0.0)
    high = math.pi
    if log_angle_density(math.pi, epsilon, dim) < level:
        high = _bisect_level(epsilon, dim, level, inside=mode, outside=math.pi)

    theta = np.linspace(low, high, _GRID_POINTS)
    density = np.exp(log_angle_density(theta, epsilon, dim) - peak)
    cells = 0.5 * (density[1:] + density[:-1]) * np.diff(theta)
    cdf = np.concatenate([[0.0], np.cumsum(cells)])
    return theta, cdf / cdf[-1]


def expected_angle_cosine(epsilon: float, dim: int) -> float:
    """Return E[cos theta], the expected cosine between input and output."""
    theta, cdf = angle_grid(float(epsilon), int(dim))
    mass = np.diff(cdf)
    midpoints = 0.5 * (theta[1:] + theta[:-1])
    return float(np.sum(mass * np.cos(midpoints)))


def sample_angles(key: jax.Array, shape: tuple[int, ...], epsilon: float, dim: int) -> jax.Array:
    """Draw angles (radians, float32) from ``p(theta)`` by inverting the CDF on the grid."""
    theta, cdf = angle_grid(float(epsilon), int(dim))
    uniform = jax.random.uniform(key, shape, jnp.float32)
    return jnp.interp(uniform, jnp.asarray(cdf, jnp.float32), jnp.asarray(theta, jnp.float32))


@register_defense(
    "purkayastha",
    family="dp",
    summary="Directional DP for unit vectors: density exp(-epsilon * angle to the input).",
    units={"epsilon": "privacy loss per radian of angle between inputs (pi * epsilon-DP overall)"},
    example={"epsilon": 1000.0},
    randomness="apply",
)
def purkayastha(epsilon: float) -> Defense:
    """Replace each unit vector by a draw from the Purkayastha distribution centred on it.

    Weggenmann and Kerschbaum (CCS 2021); see the module docstring for the
    density and the sampler. The output always has unit norm; inputs are
    normalised first. The angle concentrates near ``arctan((d-2) / epsilon)``, so
    useful settings scale with ``d``: at d = 1280 epsilon = 1000 gives an
    expected cosine of about 0.62.

    Args:
      epsilon: privacy loss per radian, > 0.

    Returns:
      A defense mapping ``(B, d)`` with ``d >= 2`` to ``(B, d)`` float32.
    """
    check_epsilon(epsilon)

    def apply(state, x, *, key):
        del state
        dim = x.shape[-1]
        if dim < 2:
            raise ParameterError(f"purkayastha needs vectors of dimension >= 2, got {dim}")
        angle_key, direction_key = jax.random.split(key)
        x = l2_normalize(jnp.asarray(x, jnp.float32))
        theta = sample_angles(angle_key, x.shape[:-1] + (1,), float(epsilon), dim)
        direction = orthogonal_directions(direction_key, x)
        return jnp.cos(theta) * x + jnp.sin(theta) * direction

    def describe(dim: int) -> dict:
        return {
            "output_dim": int(dim),
            "expected_cosine": expected_angle_cosine(float(epsilon), int(dim)),
            "bytes_per_vector": float_bytes(dim),
            "mode_angle": angle_mode(float(epsilon), int(dim)),
            "epsilon": float(epsilon),
        }

    return Defense("purkayastha", fit_stateless, apply, describe)
