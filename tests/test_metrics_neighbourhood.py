"""Neighbourhood metrics checked against brute-force NumPy references written here."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slime_def.errors import ParameterError
from slime_def.evaluate.neighbourhood import (
    knn_indices,
    knn_overlap,
    mean_cosine,
    random_recall_at_k,
    recall_at_k,
)

# faiss computes similarities in float32 and the references in float64, so neighbours whose
# similarities differ by less than this may legitimately swap places.
NEAR_TIE = 1e-5

SIZES = [(40, 8), (300, 1280), (200, 3)]


def random_vectors(seed, n, d):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def reference_cosine(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def reference_knn(database, k, queries=None):
    """Return (top-k indices, full similarity matrix), with self excluded when queries is None."""
    if queries is None:
        similarity = reference_cosine(database, database)
        np.fill_diagonal(similarity, -np.inf)
    else:
        similarity = reference_cosine(queries, database)
    order = np.argsort(-similarity, axis=1, kind="stable")
    return order[:, :k], similarity


def assert_same_neighbours(found, expected, similarity, k):
    """Check found against expected kNN, tolerating swaps only between near-tied neighbours."""
    assert found.shape == expected.shape
    for row in range(found.shape[0]):
        found_similarity = np.sort(similarity[row, found[row]])[::-1]
        expected_similarity = similarity[row, expected[row]]
        np.testing.assert_allclose(found_similarity, expected_similarity, atol=NEAR_TIE, err_msg=f"row {row}")

        ranked = np.sort(similarity[row][np.isfinite(similarity[row])])[::-1]
        has_clear_boundary = len(ranked) == k or ranked[k - 1] - ranked[k] > NEAR_TIE
        if has_clear_boundary:
            assert set(found[row].tolist()) == set(expected[row].tolist()), f"row {row}"


def reference_overlap(a, b, k):
    neighbours_a, _ = reference_knn(a, k)
    neighbours_b, _ = reference_knn(b, k)
    shares = []
    for row in range(len(a)):
        shared = set(neighbours_a[row].tolist()) & set(neighbours_b[row].tolist())
        shares.append(len(shared) / k)
    return sum(shares) / len(shares)


def reference_ranks(queries, keys):
    similarity = reference_cosine(queries, keys)
    ranks = []
    for row in range(len(queries)):
        true_similarity = similarity[row, row]
        better = sum(1 for column in range(len(keys)) if similarity[row, column] > true_similarity)
        ranks.append(better + 1)
    return np.array(ranks)


# knn_indices


@pytest.mark.parametrize("n, d", SIZES)
@pytest.mark.parametrize("k", [1, 5, 17])
def test_knn_self_search_matches_brute_force(n, d, k):
    x = random_vectors(n * d + k, n, d)

    found = knn_indices(x, k)

    expected, similarity = reference_knn(x, k)
    assert_same_neighbours(found, expected, similarity, k)


@pytest.mark.parametrize("n, d", SIZES)
def test_knn_query_search_matches_brute_force(n, d):
    x = random_vectors(1, n, d)
    queries = random_vectors(2, 25, d)

    found = knn_indices(x, 7, queries=queries)

    expected, similarity = reference_knn(x, 7, queries=queries)
    assert_same_neighbours(found, expected, similarity, 7)


def test_knn_results_sorted_most_similar_first():
    x = random_vectors(3, 120, 64)

    found = knn_indices(x, 10)

    _, similarity = reference_knn(x, 10)
    found_similarity = np.take_along_axis(similarity, found, axis=1)
    assert np.all(np.diff(found_similarity, axis=1) <= NEAR_TIE)


def test_knn_dtype_and_shape():
    x = random_vectors(4, 30, 5)

    found = knn_indices(x, 4)

    assert found.dtype == np.int64
    assert found.shape == (30, 4)


def test_knn_hand_computed_angles():
    degrees = np.array([0.0, 10.0, 30.0, 70.0, 150.0])
    radians = np.deg2rad(degrees)
    x = np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)

    found = knn_indices(x, 2)

    expected = np.array([[1, 2], [0, 2], [1, 0], [2, 1], [3, 2]])
    np.testing.assert_array_equal(found, expected)


def test_knn_ignores_vector_length():
    x = random_vectors(5, 60, 16)
    scales = np.random.default_rng(6).uniform(0.01, 100.0, size=(60, 1)).astype(np.float32)

    found_scaled = knn_indices(x * scales, 5)

    expected, similarity = reference_knn(x, 5)
    assert_same_neighbours(found_scaled, expected, similarity, 5)


def test_knn_keep_self_puts_item_first():
    x = random_vectors(7, 50, 12)

    found = knn_indices(x, 3, exclude_self=False)

    np.testing.assert_array_equal(found[:, 0], np.arange(50))


def test_knn_exclude_self_with_duplicate_rows():
    base = random_vectors(8, 5, 6)
    x = np.repeat(base, 4, axis=0)

    found = knn_indices(x, 3)

    assert found.shape == (20, 3)
    for row in range(20):
        assert row not in found[row].tolist()
        assert len(set(found[row].tolist())) == 3
        duplicates = {row - row % 4 + offset for offset in range(4)} - {row}
        assert set(found[row].tolist()) == duplicates


@pytest.mark.parametrize("k", [2, 9])
def test_knn_exclude_self_when_all_rows_identical(k):
    # With k=2, faiss may return three tied rows without the item itself.
    x = np.ones((10, 4), dtype=np.float32)

    found = knn_indices(x, k)

    assert found.shape == (10, k)
    for row in range(10):
        assert row not in found[row].tolist()
        assert len(set(found[row].tolist())) == k


@pytest.mark.parametrize("k", [0, -1, 10])
def test_knn_self_search_rejects_k_out_of_range(k):
    x = random_vectors(9, 10, 4)

    with pytest.raises(ParameterError, match="out of range"):
        knn_indices(x, k)


def test_knn_keep_self_allows_k_equal_n():
    x = random_vectors(10, 10, 4)

    found = knn_indices(x, 10, exclude_self=False)

    assert sorted(found[0].tolist()) == list(range(10))


def test_knn_query_search_rejects_k_above_n():
    x = random_vectors(11, 10, 4)

    with pytest.raises(ParameterError, match="out of range"):
        knn_indices(x, 11, queries=x[:2])


@pytest.mark.parametrize("k", [2.0, "3", True, None])
def test_knn_rejects_non_integer_k(k):
    x = random_vectors(12, 10, 4)

    with pytest.raises(ParameterError, match="integer"):
        knn_indices(x, k)


def test_knn_rejects_zero_row():
    x = random_vectors(13, 10, 4)
    x[6] = 0.0

    with pytest.raises(ValueError, match="zero-norm.*row 6"):
        knn_indices(x, 3)


def test_knn_rejects_nan():
    x = random_vectors(14, 10, 4)
    x[2, 1] = np.nan

    with pytest.raises(ValueError, match="NaN or infinite.*row 2"):
        knn_indices(x, 3)


def test_knn_rejects_one_dimensional_input():
    with pytest.raises(ValueError, match="2-D"):
        knn_indices(np.ones(10, dtype=np.float32), 3)


def test_knn_rejects_query_dimension_mismatch():
    x = random_vectors(15, 10, 4)

    with pytest.raises(ValueError, match="same dimension"):
        knn_indices(x, 3, queries=random_vectors(16, 2, 5))


# knn_overlap


@pytest.mark.parametrize("n, d", SIZES)
@pytest.mark.parametrize("k", [1, 10])
def test_overlap_matches_brute_force(n, d, k):
    a = random_vectors(20 + n, n, d)
    b = a + 0.8 * random_vectors(21 + n, n, d)

    overlap = knn_overlap(a, b, k)

    assert overlap == pytest.approx(reference_overlap(a, b, k), abs=1e-12)


def test_overlap_different_dimensions_matches_brute_force():
    a = random_vectors(22, 300, 1280)
    projection = np.random.default_rng(23).standard_normal((1280, 64)).astype(np.float32)
    b = a @ projection

    overlap = knn_overlap(a, b, 10)

    assert overlap == pytest.approx(reference_overlap(a, b, 10), abs=1e-12)


def test_overlap_identical_spaces_is_one():
    a = random_vectors(24, 200, 32)

    assert knn_overlap(a, a.copy(), 10) == 1.0


def test_overlap_rotated_and_scaled_space_is_one():
    a = random_vectors(25, 150, 16)
    rotation, _ = np.linalg.qr(np.random.default_rng(26).standard_normal((16, 16)))
    scales = np.random.default_rng(27).uniform(0.1, 10.0, size=(150, 1))
    b = ((a @ rotation) * scales).astype(np.float32)

    assert knn_overlap(a, b, 5) == 1.0


def test_overlap_permuted_items_near_chance():
    n, k = 400, 10
    a = random_vectors(28, n, 32)
    b = a[np.random.default_rng(29).permutation(n)]

    overlap = knn_overlap(a, b, k)

    assert overlap == pytest.approx(k / (n - 1), abs=0.015)


def test_overlap_hand_computed():
    # Unit vectors at the given angles. In a, items 0, 1 are close together, as are 2, 3.
    # In b the pairs are regrouped as {0, 2} and {1, 3}.
    degrees_a = np.deg2rad([0.0, 5.0, 90.0, 95.0])
    degrees_b = np.deg2rad([0.0, 90.0, 5.0, 95.0])
    a = np.stack([np.cos(degrees_a), np.sin(degrees_a)], axis=1).astype(np.float32)
    b = np.stack([np.cos(degrees_b), np.sin(degrees_b)], axis=1).astype(np.float32)

    # k=1: nearest in a are 1, 0, 3, 2; in b they are 2, 3, 0, 1. No item agrees.
    assert knn_overlap(a, b, 1) == 0.0
    # k=2: in a the lists are {1, 2}, {0, 2}, {3, 1}, {2, 1}; in b they are {2, 1}, {3, 2},
    # {0, 1}, {1, 2}. Shared counts 2, 1, 1, 2 give 6 / 8.
    assert knn_overlap(a, b, 2) == 0.75


def test_overlap_rejects_row_count_mismatch():
    with pytest.raises(ValueError, match="same items"):
        knn_overlap(random_vectors(30, 10, 4), random_vectors(31, 11, 4), 3)


@pytest.mark.parametrize("k", [0, 10, 11])
def test_overlap_rejects_k_out_of_range(k):
    a = random_vectors(32, 10, 4)

    with pytest.raises(ParameterError, match=r"\[1, 9\]"):
        knn_overlap(a, a, k)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 60),
    d=st.integers(2, 20),
    data=st.data(),
)
def test_overlap_symmetric_and_bounded(seed, n, d, data):
    k = data.draw(st.integers(1, n - 1))
    a = random_vectors(seed, n, d)
    b = random_vectors(seed + 1, n, d)

    forward = knn_overlap(a, b, k)
    backward = knn_overlap(b, a, k)

    assert forward == backward
    assert 0.0 <= forward <= 1.0


# recall_at_k


@pytest.mark.parametrize("n, d", SIZES)
def test_recall_matches_brute_force(n, d):
    keys = random_vectors(40 + n, n, d)
    queries = keys + 1.0 * random_vectors(41 + n, n, d)

    scores = recall_at_k(queries, keys, ks=(1, 5, 10))

    ranks = reference_ranks(queries, keys)
    for k in (1, 5, 10):
        assert scores[f"recall@{k}"] == pytest.approx(np.mean(ranks <= k), abs=1e-12)
    assert scores["mean_rank"] == pytest.approx(np.mean(ranks), abs=1e-9)
    assert scores["mrr"] == pytest.approx(np.mean(1.0 / ranks), abs=1e-12)


def test_recall_keys_are_stable():
    keys = random_vectors(42, 20, 4)

    scores = recall_at_k(keys, keys)

    assert set(scores) == {"recall@1", "recall@5", "recall@10", "mean_rank", "mrr"}
    assert all(isinstance(value, float) for value in scores.values())


def test_recall_identical_spaces_is_one():
    keys = random_vectors(43, 100, 1280)

    scores = recall_at_k(keys, keys.copy(), ks=(1, 5))

    assert scores == {"recall@1": 1.0, "recall@5": 1.0, "mean_rank": 1.0, "mrr": 1.0}


def test_recall_hand_computed():
    # Keys at 0, 90 and 180 degrees. Query 0 sits at 100 degrees (nearest key 1, then its own
    # key 0 at 100 degrees versus key 2 at 80: rank 3). Query 1 sits on its key (rank 1).
    # Query 2 sits at 170 degrees (its own key 2 is nearest: rank 1).
    def unit(angle):
        return [math.cos(math.radians(angle)), math.sin(math.radians(angle))]

    keys = np.array([unit(0), unit(90), unit(180)], dtype=np.float32)
    queries = np.array([unit(100), unit(90), unit(170)], dtype=np.float32)

    scores = recall_at_k(queries, keys, ks=(1, 2, 3))

    assert scores["recall@1"] == pytest.approx(2 / 3)
    assert scores["recall@2"] == pytest.approx(2 / 3)
    assert scores["recall@3"] == 1.0
    assert scores["mean_rank"] == pytest.approx(5 / 3)
    assert scores["mrr"] == pytest.approx((1 / 3 + 1 + 1) / 3)


def test_recall_all_tied_is_chance():
    n = 8
    keys = np.ones((n, 3), dtype=np.float32)

    scores = recall_at_k(keys, keys, ks=(1, 3, 8))

    assert scores["recall@1"] == pytest.approx(1 / n)
    assert scores["recall@3"] == pytest.approx(3 / n)
    assert scores["recall@8"] == pytest.approx(1.0)
    assert scores["mean_rank"] == pytest.approx((n + 1) / 2)
    assert scores["mrr"] == pytest.approx(sum(1 / rank for rank in range(1, n + 1)) / n)


def test_recall_partial_ties_match_permutation_average():
    # Duplicate keys create exact ties. The reference averages the rank over every order of
    # the keys used as a tie-breaker.
    from itertools import permutations

    keys = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 1]], dtype=np.float32)
    queries = np.array([[1, 0.2], [1, 0], [1, 1], [0.3, 1], [0, 1]], dtype=np.float32)
    similarity = reference_cosine(queries, keys)
    n = len(keys)

    hits = {1: [], 2: [], 4: []}
    ranks = []
    for order in permutations(range(n)):
        for row in range(n):
            position = {key: place for place, key in enumerate(order)}
            ranked = sorted(range(n), key=lambda key: (-round(similarity[row, key], 9), position[key]))
            rank = ranked.index(row) + 1
            ranks.append(rank)
            for k in hits:
                hits[k].append(rank <= k)

    scores = recall_at_k(queries, keys, ks=(1, 2, 4))

    for k in hits:
        assert scores[f"recall@{k}"] == pytest.approx(np.mean(hits[k]))
    assert scores["mean_rank"] == pytest.approx(np.mean(ranks))
    assert scores["mrr"] == pytest.approx(np.mean(1.0 / np.array(ranks)))


def test_recall_random_queries_near_chance():
    n = 400
    keys = random_vectors(44, n, 32)
    queries = random_vectors(45, n, 32)

    scores = recall_at_k(queries, keys, ks=(10,))

    assert scores["recall@10"] == pytest.approx(random_recall_at_k(n, 10), abs=0.02)
    assert scores["mean_rank"] == pytest.approx((n + 1) / 2, rel=0.1)


def test_recall_k_equal_n_is_one():
    keys = random_vectors(46, 12, 4)
    queries = random_vectors(47, 12, 4)

    assert recall_at_k(queries, keys, ks=(12,))["recall@12"] == 1.0


@pytest.mark.parametrize("ks", [(0,), (1, 13), (-2,)])
def test_recall_rejects_k_out_of_range(ks):
    keys = random_vectors(48, 12, 4)

    with pytest.raises(ParameterError, match="out of range"):
        recall_at_k(keys, keys, ks=ks)


def test_recall_rejects_empty_ks():
    keys = random_vectors(49, 12, 4)

    with pytest.raises(ParameterError, match="ks is empty"):
        recall_at_k(keys, keys, ks=())


def test_recall_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        recall_at_k(random_vectors(50, 12, 4), random_vectors(51, 13, 4))


def test_recall_blocks_agree_with_single_pass(monkeypatch):
    from slime_def.evaluate import neighbourhood

    keys = random_vectors(52, 90, 8)
    queries = keys + random_vectors(53, 90, 8)
    single = recall_at_k(queries, keys)

    monkeypatch.setattr(neighbourhood, "_QUERY_BLOCK", 7)
    blocked = recall_at_k(queries, keys)

    assert blocked == single


# mean_cosine


@pytest.mark.parametrize("n, d", SIZES)
def test_mean_cosine_matches_loop(n, d):
    a = random_vectors(60 + n, n, d)
    b = a + random_vectors(61 + n, n, d)

    expected = 0.0
    for row_a, row_b in zip(a.astype(np.float64), b.astype(np.float64)):
        expected += float(row_a @ row_b) / (np.linalg.norm(row_a) * np.linalg.norm(row_b))
    expected /= n

    assert mean_cosine(a, b) == pytest.approx(expected, abs=1e-9)


def test_mean_cosine_hand_computed():
    a = np.array([[1, 0], [0, 2], [3, 0]], dtype=np.float32)
    b = np.array([[1, 1], [0, 5], [-1, 0]], dtype=np.float32)

    assert mean_cosine(a, b) == pytest.approx((1 / math.sqrt(2) + 1 - 1) / 3)


def test_mean_cosine_identical_and_opposite():
    a = random_vectors(62, 50, 10)

    assert mean_cosine(a, 3.0 * a) == pytest.approx(1.0, abs=1e-12)
    assert mean_cosine(a, -a) == pytest.approx(-1.0, abs=1e-12)


def test_mean_cosine_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        mean_cosine(random_vectors(63, 10, 4), random_vectors(64, 10, 5))


def test_mean_cosine_rejects_zero_row():
    a = random_vectors(65, 10, 4)
    b = a.copy()
    b[3] = 0.0

    with pytest.raises(ValueError, match="zero-norm"):
        mean_cosine(a, b)


# random_recall_at_k


def test_random_recall_exact_values():
    assert random_recall_at_k(100, 1) == 0.01
    assert random_recall_at_k(8, 8) == 1.0
    assert random_recall_at_k(3, 2) == 2 / 3


@pytest.mark.parametrize("n, k", [(0, 1), (10, 0), (10, 11), (-5, 1)])
def test_random_recall_rejects_out_of_range(n, k):
    with pytest.raises(ParameterError):
        random_recall_at_k(n, k)
