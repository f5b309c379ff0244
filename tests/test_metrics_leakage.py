"""Normalised leakage and the floor of baseline scores."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slime_def.evaluate.leakage import HEADROOM_EPSILON, floor_of, normalised_leakage

unit_scores = st.floats(0.0, 1.0, allow_nan=False)


def test_normalised_leakage_hand_computed():
    assert normalised_leakage(0.5, 0.25, 0.75) == 0.5
    assert normalised_leakage(0.25, 0.25, 0.75) == 0.0
    assert normalised_leakage(0.75, 0.25, 0.75) == 1.0


def test_normalised_leakage_not_clipped_below_floor():
    assert normalised_leakage(0.0, 0.25, 0.75) == -0.5


def test_normalised_leakage_not_clipped_above_ceiling():
    assert normalised_leakage(1.0, 0.25, 0.75) == 1.5


def test_normalised_leakage_none_without_headroom():
    assert normalised_leakage(0.3, 0.5, 0.5) is None
    assert normalised_leakage(0.3, 0.6, 0.5) is None
    assert normalised_leakage(0.3, 0.5, 0.5 + HEADROOM_EPSILON / 2) is None


def test_normalised_leakage_small_positive_headroom():
    assert normalised_leakage(0.5005, 0.5, 0.501) == pytest.approx(0.5)


def test_normalised_leakage_accepts_numpy_scalars():
    value = normalised_leakage(np.float32(0.5), np.float64(0.25), np.float32(0.75))

    assert value == pytest.approx(0.5)
    assert isinstance(value, float)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "0.5", True])
def test_normalised_leakage_rejects_invalid_score(bad):
    with pytest.raises(ValueError, match="score must be"):
        normalised_leakage(bad, 0.1, 0.9)


@pytest.mark.parametrize("bad", [float("nan"), None])
def test_normalised_leakage_rejects_invalid_floor(bad):
    with pytest.raises(ValueError, match="floor must be"):
        normalised_leakage(0.5, bad, 0.9)


@given(score=unit_scores, floor=unit_scores, ceiling=unit_scores)
def test_normalised_leakage_matches_formula(score, floor, ceiling):
    value = normalised_leakage(score, floor, ceiling)

    if ceiling - floor <= HEADROOM_EPSILON:
        assert value is None
    else:
        assert value == pytest.approx((score - floor) / (ceiling - floor), rel=1e-12)
        assert math.isfinite(value)


def test_floor_of_takes_largest():
    assert floor_of(0.02, 0.31, 0.17) == 0.31


def test_floor_of_single_candidate():
    assert floor_of(0.4) == 0.4


def test_floor_of_rejects_no_candidates():
    with pytest.raises(ValueError, match="at least one baseline"):
        floor_of()


def test_floor_of_rejects_none_candidate():
    with pytest.raises(ValueError, match="candidate 1 must be a real number"):
        floor_of(0.1, None)


def test_floor_of_rejects_nan_candidate():
    with pytest.raises(ValueError, match="candidate 0 must be finite"):
        floor_of(float("nan"), 0.2)


@given(st.lists(unit_scores, min_size=1, max_size=6))
def test_floor_of_matches_max(candidates):
    assert floor_of(*candidates) == max(candidates)
