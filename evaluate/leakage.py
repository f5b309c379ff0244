"""Leakage scores placed between their floor (an uninformed attacker) and ceiling (no defense)."""

from __future__ import annotations

import math

# Smallest ceiling - floor treated as headroom. Scores here lie in [0, 1] and are often
# computed in float32, whose spacing near 1 is about 1.2e-7, so a gap below 1e-6 is rounding
# noise rather than something the attack gained.
HEADROOM_EPSILON = 1e-6


def _check_finite(value: float, name: str) -> float:
    """Return ``value`` as a float, or raise ValueError unless it is a finite real number."""
    if value is None or isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{name} must be a real number, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}. Check the metric that produced it.")
    return number


def normalised_leakage(score: float, floor: float, ceiling: float) -> float | None:
    """Return (score - floor) / (ceiling - floor), the share of the attack's headroom still recovered.

    ``floor`` is the score of an attacker with no information (see :func:`floor_of`) and
    ``ceiling`` the score against undefended vectors, for a metric where higher means more
    leakage. 0 means the defense leaves nothing beyond the floor, and 1 means it leaves as much
    as no defense. The value is not clipped. Below 0 means the defended score fell under the
    baseline, and above 1 means the defense helped the attacker. Both are worth reporting.

    For a metric where lower means more leakage, such as mean rank, pass the negated values.

    Args:
        score: the metric on defended vectors.
        floor: the strongest uninformed baseline of the same metric.
        ceiling: the metric on undefended vectors.

    Returns:
        The normalised leakage, or None when ceiling - floor <= :data:`HEADROOM_EPSILON`,
        because the attack then has no measurable headroom over the baseline.

    Raises:
        ValueError: an argument is not a finite real number.

    Example:
        >>> normalised_leakage(0.5, floor=0.25, ceiling=0.75)
        0.5
    """
    score = _check_finite(score, "score")
    floor = _check_finite(floor, "floor")
    ceiling = _check_finite(ceiling, "ceiling")

    headroom = ceiling - floor
    if headroom <= HEADROOM_EPSILON:
        return None
    return (score - floor) / headroom


def floor_of(*candidates: float) -> float:
    """Return the largest of the baseline scores, the floor that leakage is measured from.

    Pass every uninformed baseline computed for the metric: the attack run on random victim
    vectors, and the mean-vector prediction (for cosine-type scores) or the most-frequent-tags
    prediction (for tag scores). Taking the strongest keeps the floor honest, because any of
    them is a score an attacker gets without reading the embeddings. This assumes that higher
    means more leakage, as in :func:`normalised_leakage`.

    Raises:
        ValueError: no candidates, or a candidate that is not a finite real number. A
            baseline that was not computed should be left out, not passed as None.

    Example:
        >>> floor_of(0.02, 0.31)
        0.31
    """
    if not candidates:
        raise ValueError("floor_of needs at least one baseline score, got none.")
    values = [_check_finite(value, f"candidate {position}") for position, value in enumerate(candidates)]
    return max(values)
