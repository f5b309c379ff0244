"""Utility metrics checked against brute-force NumPy references written here."""

import numpy as np
import pytest

from slime_def.errors import ParameterError
from slime_def.evaluate.utility import _fit_ridge, category_precision_at_k, linear_probe_accuracy

# Separation between near-tied similarities that float32 (faiss) and float64 may order apart.
NEAR_TIE = 1e-5


def clustered_vectors(seed, n, d, n_categories, spread):
    generator = np.random.default_rng(seed)
    centres = generator.standard_normal((n_categories, d))
    labels = generator.integers(0, n_categories, size=n)
    x = centres[labels] + spread * generator.standard_normal((n, d))
    return x.astype(np.float32), labels


def reference_category_precision(x, labels, k):
    """Return (lowest, highest) mean same-category fraction over the valid kNN choices.

    The full float64 similarity matrix fixes the neighbours, except that candidates within
    NEAR_TIE of the k-th similarity may be swapped by float32 rounding in faiss. Each such
    row contributes its fewest and its most possible same-category neighbours.
    """
    x = x.astype(np.float64)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    lowest = highest = 0
    for row in range(len(x)):
        kth = np.sort(similarity[row])[::-1][k - 1]
        sure = [other for other in range(len(x)) if similarity[row, other] > kth + NEAR_TIE]
        tied = [other for other in range(len(x)) if abs(similarity[row, other] - kth) <= NEAR_TIE]
        needed = k - len(sure)
        same_sure = sum(1 for other in sure if labels[other] == labels[row])
        same_tied = sum(1 for other in tied if labels[other] == labels[row])
        other_tied = len(tied) - same_tied
        lowest += same_sure + max(0, needed - other_tied)
        highest += same_sure + min(needed, same_tied)
    return lowest / (len(x) * k), highest / (len(x) * k)


def reference_probe_predictions(train_x, train_y, test_x, l2):
    """Ridge on one-hot targets via the augmented normal equations, intercept unpenalised."""
    classes = sorted(set(train_y.tolist()))
    targets = np.array([[1.0 if label == c else 0.0 for c in classes] for label in train_y])
    design = np.hstack([train_x.astype(np.float64), np.ones((len(train_x), 1))])
    penalty = l2 * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0
    theta = np.linalg.solve(design.T @ design + penalty, design.T @ targets)
    test_design = np.hstack([test_x.astype(np.float64), np.ones((len(test_x), 1))])
    scores = test_design @ theta
    return np.array([classes[int(np.argmax(row))] for row in scores])


# category_precision_at_k


@pytest.mark.parametrize("n, d, spread", [(50, 8, 1.0), (300, 1280, 6.0), (200, 3, 0.7)])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_category_precision_matches_brute_force(n, d, spread, k):
    x, labels = clustered_vectors(n + d + k, n, d, n_categories=5, spread=spread)

    score = category_precision_at_k(x, labels, k)

    lowest, highest = reference_category_precision(x, labels, k)
    assert lowest - 1e-12 <= score <= highest + 1e-12
    assert highest - lowest < 0.01, "too many near ties at the k-th place for a sharp check"


def test_category_precision_hand_computed():
    # Two tight groups of unit vectors near 0 and 90 degrees, plus one stray near 45 degrees
    # labelled with the first group.
    radians = np.deg2rad([0.0, 2.0, 4.0, 90.0, 88.0, 86.0, 40.0])
    x = np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)
    labels = np.array(["a", "a", "a", "b", "b", "b", "a"])

    # k=1: every group member finds a member of its own group. The stray at 40 degrees is
    # nearest to 4 degrees (36 apart), not 86 (46 apart). All 7 agree.
    assert category_precision_at_k(x, labels, 1) == 1.0
    # k=2: group a items 0, 1, 2 find two of {0, 1, 2}: 1 each. Group b items find two of
    # {3, 4, 5}: 1 each. The stray finds 4 and 2 degrees: 1. Total 7 / 7.
    assert category_precision_at_k(x, labels, 2) == 1.0
    # k=3: each group-a item (0, 1, 2) finds the other two and the stray (label a): 3/3.
    # Each group-b item (3, 4, 5) finds the other two and then the stray, 46 to 50 degrees
    # away, before any group-a item: 2/3. The stray finds items 2, 1, 0: 3/3.
    assert category_precision_at_k(x, labels, 3) == pytest.approx((3 + 3 + 3 + 2 + 2 + 2 + 3) / (7 * 3))


def test_category_precision_random_labels_near_chance():
    n = 400
    generator = np.random.default_rng(7)
    x = generator.standard_normal((n, 16)).astype(np.float32)
    labels = generator.integers(0, 4, size=n)

    score = category_precision_at_k(x, labels, 10)

    counts = np.bincount(labels)
    chance = float(np.sum(counts * (counts - 1)) / (n * (n - 1)))
    assert score == pytest.approx(chance, abs=0.03)


@pytest.mark.parametrize("k", [0, 10])
def test_category_precision_rejects_k_out_of_range(k):
    x, labels = clustered_vectors(8, 10, 4, n_categories=2, spread=1.0)

    with pytest.raises(ParameterError, match="out of range"):
        category_precision_at_k(x, labels, k)


def test_category_precision_rejects_label_count_mismatch():
    x, labels = clustered_vectors(9, 10, 4, n_categories=2, spread=1.0)

    with pytest.raises(ValueError, match="9 labels but x has 10 rows"):
        category_precision_at_k(x, labels[:9], 3)


# linear_probe_accuracy


@pytest.mark.parametrize(
    "n_train, n_test, d, l2",
    [(200, 100, 8, 1.0), (150, 80, 1280, 1e5), (300, 100, 20, 1e3)],
)
def test_linear_probe_matches_augmented_reference(n_train, n_test, d, l2):
    spread = 8.0 if d > n_train else 2.5
    x, labels = clustered_vectors(n_train + d, n_train + n_test, d, n_categories=4, spread=spread)
    train_x, test_x = x[:n_train], x[n_train:]
    train_y, test_y = labels[:n_train], labels[n_train:]

    accuracy = linear_probe_accuracy(train_x, train_y, test_x, test_y, l2=l2)

    predicted = reference_probe_predictions(train_x, train_y, test_x, l2)
    assert accuracy == pytest.approx(np.mean(predicted == test_y), abs=1e-12)


@pytest.mark.parametrize("n_train, d", [(60, 8), (40, 1280)])
@pytest.mark.parametrize("l2", [0.1, 10.0])
def test_ridge_weights_match_augmented_solution(n_train, d, l2):
    # Both the primal (d <= n) and the dual (d > n) branch must give the ridge solution.
    x, labels = clustered_vectors(n_train * d, n_train, d, n_categories=3, spread=1.0)
    targets = np.eye(3)[labels]
    design = np.hstack([x.astype(np.float64), np.ones((n_train, 1))])
    penalty = l2 * np.eye(d + 1)
    penalty[-1, -1] = 0.0
    theta = np.linalg.solve(design.T @ design + penalty, design.T @ targets)

    weights, feature_mean, target_mean = _fit_ridge(x.astype(np.float64), targets, l2)

    np.testing.assert_allclose(weights, theta[:-1], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(target_mean - feature_mean @ weights, theta[-1], rtol=1e-7, atol=1e-10)


def test_linear_probe_separable_case_is_perfect():
    x, labels = clustered_vectors(10, 300, 16, n_categories=3, spread=0.05)

    accuracy = linear_probe_accuracy(x[:200], labels[:200], x[200:], labels[200:])

    assert accuracy == 1.0


def test_linear_probe_hand_computed():
    # One feature. Centred targets give W = [-3, 3] / (10 + l2), so the sign of x decides.
    train_x = np.array([[-2.0], [-1.0], [1.0], [2.0]], dtype=np.float32)
    train_y = np.array([0, 0, 1, 1])
    test_x = np.array([[-3.0], [3.0], [0.5]], dtype=np.float32)

    assert linear_probe_accuracy(train_x, train_y, test_x, np.array([0, 1, 1])) == 1.0
    assert linear_probe_accuracy(train_x, train_y, test_x, np.array([0, 1, 0])) == pytest.approx(2 / 3)


def test_linear_probe_string_labels():
    train_x = np.array([[-2.0], [-1.0], [1.0], [2.0]], dtype=np.float32)
    test_x = np.array([[-3.0], [3.0]], dtype=np.float32)

    accuracy = linear_probe_accuracy(train_x, ["cat", "cat", "dog", "dog"], test_x, ["cat", "dog"])

    assert accuracy == 1.0


def test_linear_probe_unseen_test_label_counts_as_error():
    train_x = np.array([[-2.0], [-1.0], [1.0], [2.0]], dtype=np.float32)
    test_x = np.array([[-3.0], [3.0]], dtype=np.float32)

    accuracy = linear_probe_accuracy(train_x, [0, 0, 1, 1], test_x, [0, 7])

    assert accuracy == 0.5


@pytest.mark.parametrize("l2", [0.0, -1.0, float("nan"), float("inf"), "1"])
def test_linear_probe_rejects_invalid_l2(l2):
    x = np.ones((4, 2), dtype=np.float32)

    with pytest.raises(ParameterError, match="l2 must be a finite number > 0"):
        linear_probe_accuracy(x, [0, 0, 1, 1], x, [0, 0, 1, 1], l2=l2)


def test_linear_probe_rejects_dimension_mismatch():
    with pytest.raises(ValueError, match="same feature dimension"):
        linear_probe_accuracy(np.ones((4, 2)), [0, 0, 1, 1], np.ones((2, 3)), [0, 1])


def test_linear_probe_rejects_train_label_count_mismatch():
    with pytest.raises(ValueError, match="train_y has 3 labels but train_x has 4 rows"):
        linear_probe_accuracy(np.ones((4, 2)), [0, 0, 1], np.ones((2, 2)), [0, 1])


def test_linear_probe_rejects_test_label_count_mismatch():
    with pytest.raises(ValueError, match="test_y has 1 labels but test_x has 2 rows"):
        linear_probe_accuracy(np.ones((4, 2)), [0, 0, 1, 1], np.ones((2, 2)), [0])
