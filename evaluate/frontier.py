"""The leakage-utility Pareto frontier.

A point (utility u, leakage l) is on the frontier when no other point keeps at
least as much utility while leaking no more, with one of the two strictly
better: no q with ``u_q >= u_p`` and ``l_q <= l_p`` and ``(u_q, l_q) != (u_p, l_p)``.
Equal points do not dominate each other, so ties are all on the frontier.
"""

from __future__ import annotations

import numpy as np


def pareto_mask(utility, leakage) -> np.ndarray:
    """Mark the points on the frontier of high utility and low leakage.

    Args:
      utility: (n,) utility per point; higher is better.
      leakage: (n,) leakage per point; lower is better.

    Returns:
      (n,) bool, True for points no other point dominates. Points with a NaN
      coordinate are never on the frontier and dominate nothing.

    Example:
      >>> pareto_mask([0.9, 0.8, 0.5], [0.7, 0.9, 0.1]).tolist()
      [True, False, True]
    """
    utility = np.asarray(utility, dtype=np.float64)
    leakage = np.asarray(leakage, dtype=np.float64)
    if utility.shape != leakage.shape or utility.ndim != 1:
        raise ValueError(
            f"utility and leakage must be 1-d arrays of one length, got shapes {utility.shape} and {leakage.shape}"
        )
    mask = np.zeros(utility.shape, dtype=bool)
    valid = np.flatnonzero(~(np.isnan(utility) | np.isnan(leakage)))

    # Walk from the highest utility down. A point is dominated by a point of
    # strictly higher utility with leakage <= its own (best_above <= l), or by a
    # point of equal utility with strictly lower leakage.
    order = valid[np.lexsort((leakage[valid], -utility[valid]))]
    best_above = np.inf
    start = 0
    while start < order.size:
        stop = start
        while stop < order.size and utility[order[stop]] == utility[order[start]]:
            stop += 1
        group = order[start:stop]
        lowest = leakage[group].min()
        if lowest < best_above:
            mask[group[leakage[group] == lowest]] = True
        best_above = min(best_above, lowest)
        start = stop
    return mask
