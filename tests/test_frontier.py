import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from slime_def.evaluate.frontier import pareto_mask


def brute_force_front(utility, leakage):
    """O(n^2) reference: p is kept unless some q has u >= and l <= with one strict."""
    n = len(utility)
    keep = []
    for p in range(n):
        if math.isnan(utility[p]) or math.isnan(leakage[p]):
            keep.append(False)
            continue
        dominated = False
        for q in range(n):
            if q == p or math.isnan(utility[q]) or math.isnan(leakage[q]):
                continue
            no_worse = utility[q] >= utility[p] and leakage[q] <= leakage[p]
            better = utility[q] > utility[p] or leakage[q] < leakage[p]
            if no_worse and better:
                dominated = True
                break
        keep.append(not dominated)
    return keep


# Few distinct values make ties in utility, in leakage and of whole points common.
coarse = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])
fine = st.floats(min_value=-1.0, max_value=2.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(coarse, coarse), max_size=30))
def test_front_matches_brute_force_with_ties(points):
    utility = [u for u, _ in points]
    leakage = [l for _, l in points]
    assert pareto_mask(utility, leakage).tolist() == brute_force_front(utility, leakage)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(fine, st.one_of(fine, st.just(math.nan))), max_size=40))
def test_front_matches_brute_force_random(points):
    utility = [u for u, _ in points]
    leakage = [l for _, l in points]
    assert pareto_mask(utility, leakage).tolist() == brute_force_front(utility, leakage)


def test_identical_points_are_both_on_front():
    assert pareto_mask([0.5, 0.5], [0.2, 0.2]).tolist() == [True, True]


def test_equal_utility_keeps_lower_leakage():
    assert pareto_mask([0.5, 0.5], [0.2, 0.3]).tolist() == [True, False]


def test_equal_leakage_keeps_higher_utility():
    assert pareto_mask([0.5, 0.6], [0.2, 0.2]).tolist() == [False, True]


def test_empty_input():
    assert pareto_mask([], []).tolist() == []


def test_mismatched_shapes_raise():
    import pytest

    with pytest.raises(ValueError, match="one length"):
        pareto_mask(np.zeros(3), np.zeros(2))
