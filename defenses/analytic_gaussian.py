"""Calibration of the Gaussian mechanism: the analytic Gaussian mechanism.

Balle and Wang, "Improving the Gaussian Mechanism for Differential Privacy:
Analytical Calibration and Optimal Denoising", ICML 2018 (Theorem 8): adding
``N(0, sigma^2 I)`` to a function of L2 sensitivity ``Delta`` is
(epsilon, delta)-DP if and only if

    Phi(Delta / (2 sigma) - epsilon sigma / Delta)
      - exp(epsilon) * Phi(-Delta / (2 sigma) - epsilon sigma / Delta)  <=  delta,

where ``Phi`` is the standard normal CDF. The left side decreases in ``sigma``
from 1 to 0, so the smallest valid sigma is its root, found here with Brent's
method in log space. The classic bound ``sigma = Delta sqrt(2 ln(1.25/delta)) /
epsilon`` (Dwork and Roth, 2014, Theorem A.1) is valid only for epsilon < 1 and
is kept for comparison in :func:`classic_gaussian_sigma`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import optimize, special


def gaussian_mechanism_delta(epsilon: float, sigma: float, sensitivity: float = 2.0) -> float:
    """Return the smallest delta for which the Gaussian mechanism is (epsilon, delta)-DP.

    Args:
      epsilon: privacy loss bound, > 0.
      sigma: standard deviation of the added noise per coordinate, > 0.
      sensitivity: L2 sensitivity ``Delta`` of the released function, > 0.
    """
    mean_shift = epsilon * sigma / sensitivity
    half_ratio = sensitivity / (2.0 * sigma)
    log_upper = special.log_ndtr(half_ratio - mean_shift)
    log_lower = special.log_ndtr(-half_ratio - mean_shift)

    # delta = Phi(a) * (1 - exp(epsilon) Phi(b) / Phi(a)); working with the log of
    # the ratio avoids overflow of exp(epsilon) for large epsilon.
    log_ratio = min(epsilon + log_lower - log_upper, 0.0)
    return float(math.exp(log_upper) * -math.expm1(log_ratio))


def classic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 2.0) -> float:
    """Return the classic ``Delta sqrt(2 ln(1.25/delta)) / epsilon`` (valid for epsilon < 1 only)."""
    return sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


@functools.lru_cache(maxsize=256)
def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 2.0) -> float:
    """Return the smallest sigma that makes the Gaussian mechanism (epsilon, delta)-DP.

    Exact for every epsilon > 0 (Balle and Wang, ICML 2018). The returned sigma
    satisfies ``gaussian_mechanism_delta(epsilon, sigma) <= delta`` and matches
    delta to about 1e-12 relative.

    Args:
      epsilon: privacy loss bound, > 0.
      delta: failure probability, in (0, 1).
      sensitivity: L2 sensitivity ``Delta``, > 0; 2 for unit vectors.

    Returns:
      The noise standard deviation per coordinate, in the units of the vectors.
    """
    log_target = math.log(delta)

    def excess(log_sigma: float) -> float:
        value = gaussian_mechanism_delta(epsilon, math.exp(log_sigma), sensitivity)
        return (math.log(value) if value > 0.0 else -np.inf) - log_target

    # Bracket the root around the classic value, which is within a small factor of it.
    low = high = math.log(classic_gaussian_sigma(epsilon, delta, sensitivity))
    while excess(low) <= 0.0:
        low -= 1.0
    while excess(high) > 0.0:
        high += 1.0
    log_sigma = optimize.brentq(excess, low, high, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    sigma = math.exp(log_sigma)

    # Brent's root may sit a rounding error on the unsafe side; step up to stay private.
    while gaussian_mechanism_delta(epsilon, sigma, sensitivity) > delta:
        sigma = float(np.nextafter(sigma, np.inf))
    return sigma
