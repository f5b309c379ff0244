"""Neighbourhood metrics on embedding matrices: cosine kNN, kNN overlap, recall@k of the true item.

All functions take plain NumPy arrays of shape (N, d), one row per item, and compare rows by
cosine similarity. Rows are L2-normalised inside, so callers may pass raw vectors. A row with
zero norm has no defined cosine and raises ValueError, as does any NaN or infinite value.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from slime_def.errors import ParameterError

# Similarities closer than this (computed in float64 from float32 inputs) count as ties in
# recall_at_k. Float64 rounding on unit vectors stays near 1e-13, far below it, and inputs in
# float32 cannot resolve cosine differences that small.
TIE_TOLERANCE = 1e-9

# Rows of the query-by-key similarity matrix computed at once in recall_at_k, which bounds
# its memory to about 8 * _QUERY_BLOCK * N bytes.
_QUERY_BLOCK = 1024

# Rows checked, normalised and passed to faiss at once in knn_indices, so a large matrix is
# never copied whole: memory stays near the input plus faiss's own copy of the database.
_ROW_BLOCK = 8192


def _check_matrix(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 (N, d) array, or raise ValueError."""
    array = np.asarray(x)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, d), got shape {array.shape}.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column, got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"{name} must contain real numbers, got dtype {array.dtype}.")
    array = np.ascontiguousarray(array, dtype=np.float32)
    for start in range(0, array.shape[0], _ROW_BLOCK):
        finite = np.isfinite(array[start : start + _ROW_BLOCK])
        if not finite.all():
            bad_row = start + int(np.argwhere(~finite)[0, 0])
            raise ValueError(
                f"{name} contains NaN or infinite values (first in row {bad_row}). Fix or drop those rows."
            )
    return array


def _normalised_blocks(array: np.ndarray, name: str):
    """Yield unit-norm float32 copies of consecutive row blocks of a checked (N, d) array.

    Norms are accumulated in float64, as in :func:`_normalise_rows`.
    """
    for start in range(0, array.shape[0], _ROW_BLOCK):
        block = array[start : start + _ROW_BLOCK]
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        zero_rows = np.flatnonzero(norms == 0.0)
        if zero_rows.size:
            raise ValueError(
                f"{name} has a zero-norm row (first: row {start + int(zero_rows[0])}), "
                "so cosine similarity is undefined. Drop or replace those rows."
            )
        yield (block / norms[:, None]).astype(np.float32, copy=False)


def _normalise_rows(x: np.ndarray, name: str, dtype: type = np.float32) -> np.ndarray:
    """Return a copy of ``x`` with unit-norm rows, or raise ValueError on a zero row."""
    array = x.astype(dtype, copy=True)
    norms = np.linalg.norm(array.astype(np.float64), axis=1)
    zero_rows = np.flatnonzero(norms == 0.0)
    if zero_rows.size:
        raise ValueError(
            f"{name} has {zero_rows.size} zero-norm row(s) (first: row {int(zero_rows[0])}), "
            "so cosine similarity is undefined. Drop or replace those rows."
        )
    array /= norms[:, None].astype(dtype)
    return array


def _check_same_rows(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must describe the same items row by row, "
            f"got {a.shape[0]} and {b.shape[0]} rows."
        )


def _check_k(k: int, low: int, high: int, context: str) -> int:
    """Return ``k`` as int, or raise ParameterError unless it is an integer in [low, high]."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ParameterError(f"k must be an integer, got {k!r} of type {type(k).__name__}.")
    if not low <= k <= high:
        raise ParameterError(f"k={k} is out of range: {context} allows k in [{low}, {high}]. Pass a k in that range.")
    return int(k)


def knn_indices(
    x: np.ndarray,
    k: int,
    *,
    queries: np.ndarray | None = None,
    exclude_self: bool = True,
) -> np.ndarray:
    """Find the k nearest rows of ``x`` by cosine similarity, with an exact faiss IndexFlatIP search.

    Args:
        x: (N, d) database vectors, L2-normalised inside.
        k: neighbours per query. With ``queries=None`` and ``exclude_self=True`` it must lie in
            [1, N - 1], otherwise in [1, N].
        queries: (Q, d) query vectors, L2-normalised inside. ``None`` uses the rows of ``x`` as
            the queries.
        exclude_self: only used when ``queries`` is None. True drops item i from its own list.
            It has no effect when ``queries`` is given, because the queries are then not rows of
            ``x``: pass ``queries=None`` to search ``x`` against itself.

    Returns:
        (Q, k) int64 row indices into ``x``, most similar first (Q = N when ``queries`` is None).

    Ties: among rows with exactly equal similarity, faiss decides which are kept at the k-th
    place and in what order (observed with faiss 1.15 on CPU: the lowest indices, listed in
    descending order). Compare results on data with exact ties as sets, and only away from
    the k-th place.
    When item i has exact duplicates, row i is dropped even if a duplicate ranks before it.

    Raises:
        ParameterError: k out of range.
        ValueError: arrays of the wrong shape, with non-finite values or zero-norm rows.
    """
    database = _check_matrix(x, "x")
    n_items, dim = database.shape
    search_self = queries is None
    drop_self = search_self and exclude_self

    if search_self:
        query_vectors, query_name = database, "x"
    else:
        query_vectors, query_name = _check_matrix(queries, "queries"), "queries"
        if query_vectors.shape[1] != dim:
            raise ValueError(
                f"queries and x must have the same dimension, got {query_vectors.shape[1]} and {dim}."
            )

    high = n_items - 1 if drop_self else n_items
    k = _check_k(k, 1, high, f"{'excluding each item from its own list, ' if drop_self else ''}N={n_items} rows")

    index = faiss.IndexFlatIP(dim)
    for block in _normalised_blocks(database, "x"):
        index.add(block)
    width = k + 1 if drop_self else k
    found = np.concatenate(
        [index.search(block, width)[1] for block in _normalised_blocks(query_vectors, query_name)]
    ).astype(np.int64, copy=False)
    if not drop_self:
        return found

    return _drop_own_index(found, k)


def _drop_own_index(found: np.ndarray, k: int) -> np.ndarray:
    """Remove index i from row i of a (N, k + 1) result, or its last column where i is absent."""
    own = np.arange(found.shape[0])[:, None]
    is_own = found == own

    # Row i can miss index i only when more than k rows tie with item i itself. The last
    # column is then one of those tied rows, so dropping it keeps k valid neighbours.
    missing = ~is_own.any(axis=1)
    is_own[missing, -1] = True

    return found[~is_own].reshape(found.shape[0], k)


def knn_overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Measure how well two spaces agree on each item's k nearest neighbours.

    ``a`` and ``b`` describe the same N items, row by row, in two spaces (for example clean and
    defended vectors, or aligned victim vectors and the attacker's own vectors). For each item
    i, kNN_a(i) is the set of its k nearest other items by cosine similarity in ``a``, and
    likewise for ``b``. The score is the mean over items of |kNN_a(i) ∩ kNN_b(i)| / k.

    Args:
        a: (N, d_a) vectors.
        b: (N, d_b) vectors of the same items. d_b may differ from d_a.
        k: neighbours per item, in [1, N - 1].

    Returns:
        Overlap in [0, 1]. It is 1 when both spaces rank neighbours alike, and about
        k / (N - 1) when the two neighbourhoods are unrelated.

    Raises:
        ParameterError: k outside [1, N - 1].
        ValueError: row counts differ, or invalid arrays as in :func:`knn_indices`.
    """
    a = _check_matrix(a, "a")
    b = _check_matrix(b, "b")
    _check_same_rows(a, b, "a", "b")
    k = _check_k(k, 1, a.shape[0] - 1, f"excluding each item from its own list, N={a.shape[0]} items")

    neighbours_a = knn_indices(a, k)
    neighbours_b = knn_indices(b, k)

    # Each row of either result has k distinct indices, so after sorting the two rows side
    # by side, every index shared by both appears exactly twice, next to itself.
    merged = np.sort(np.concatenate([neighbours_a, neighbours_b], axis=1), axis=1)
    shared = np.count_nonzero(merged[:, 1:] == merged[:, :-1], axis=1)
    return float(np.mean(shared / k))


def recall_at_k(
    queries: np.ndarray,
    keys: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Rank the true key for every query among all keys, and summarise the ranks.

    ``queries[i]`` and ``keys[i]`` are the same item in one space (for example an aligned
    victim vector and the attacker's own vector of that image). All N keys, the true one
    included, are ranked by cosine similarity to ``queries[i]``, and rank 1 is the most similar.

    Ties are resolved by expectation over a uniformly random order of the tied keys, so a
    degenerate input (all vectors equal) scores at chance level instead of 0 or 1. With g keys
    strictly more similar than the true key and e other keys tied with it (within
    :data:`TIE_TOLERANCE`), the true key's rank is uniform on {g + 1, ..., g + e + 1}, and:

    - ``recall@k`` is the mean over items of P(rank <= k) = clip((k - g) / (e + 1), 0, 1),
    - ``mean_rank`` is the mean over items of E[rank] = g + 1 + e / 2 (1 = best, N = worst),
    - ``mrr`` is the mean over items of E[1 / rank].

    Without ties these are the usual definitions. Chance level is k / N for recall@k (see
    :func:`random_recall_at_k`) and (N + 1) / 2 for mean_rank.

    Args:
        queries: (N, d) query vectors.
        keys: (N, d) key vectors of the same items, in the same space.
        ks: cut-offs, each in [1, N].

    Returns:
        ``{"recall@<k>": ... for each k in ks, "mean_rank": ..., "mrr": ...}``, all floats.

    Raises:
        ParameterError: an entry of ks outside [1, N], or ks empty.
        ValueError: shapes differ, or invalid arrays as in :func:`knn_indices`.
    """
    query_vectors = _normalise_rows(_check_matrix(queries, "queries"), "queries", np.float64)
    key_vectors = _normalise_rows(_check_matrix(keys, "keys"), "keys", np.float64)
    if query_vectors.shape != key_vectors.shape:
        raise ValueError(
            f"queries and keys must have the same shape (one row per item, one space), "
            f"got {query_vectors.shape} and {key_vectors.shape}."
        )
    n_items = query_vectors.shape[0]
    if len(ks) == 0:
        raise ParameterError("ks is empty. Pass at least one cut-off such as ks=(1, 5, 10).")
    cutoffs = sorted({_check_k(k, 1, n_items, f"recall@k over N={n_items} keys") for k in ks})

    better, tied = _count_better_and_tied(query_vectors, key_vectors)

    result = {}
    for k in cutoffs:
        hit_probability = np.clip((k - better) / (tied + 1), 0.0, 1.0)
        result[f"recall@{k}"] = float(np.mean(hit_probability))
    result["mean_rank"] = float(np.mean(better + 1 + tied / 2))
    result["mrr"] = float(np.mean(_expected_reciprocal_rank(better, tied)))
    return result


def _count_better_and_tied(queries: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each i, count keys j != i more similar to queries[i] than keys[i], and keys tied with it."""
    n_items = queries.shape[0]
    better = np.empty(n_items, dtype=np.int64)
    tied = np.empty(n_items, dtype=np.int64)

    for start in range(0, n_items, _QUERY_BLOCK):
        stop = min(start + _QUERY_BLOCK, n_items)
        rows = np.arange(start, stop)
        similarity = queries[start:stop] @ keys.T
        true_similarity = similarity[rows - start, rows][:, None]

        better[start:stop] = np.count_nonzero(similarity > true_similarity + TIE_TOLERANCE, axis=1)
        # The true key always ties with itself, so subtract it from the tie count.
        tied[start:stop] = np.count_nonzero(np.abs(similarity - true_similarity) <= TIE_TOLERANCE, axis=1) - 1

    return better, tied


def _expected_reciprocal_rank(better: np.ndarray, tied: np.ndarray) -> np.ndarray:
    """E[1 / rank] for rank uniform on {g + 1, ..., g + e + 1}, from the harmonic-number difference."""
    # H(n) = sum_{r=1}^{n} 1 / r, tabulated once up to the largest rank needed.
    largest_rank = int(np.max(better + tied + 1))
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, largest_rank + 1))])
    return (harmonic[better + tied + 1] - harmonic[better]) / (tied + 1)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Return the mean over rows of cos(a[i], b[i]), computed in float64.

    Args:
        a: (N, d) vectors.
        b: (N, d) vectors, same shape as ``a``.

    Returns:
        Mean cosine in [-1, 1]. On anisotropic embeddings even unrelated pairs score well
        above 0, so report it beside a mean-vector baseline.

    Raises:
        ValueError: shapes differ, or invalid arrays as in :func:`knn_indices`.
    """
    a = _check_matrix(a, "a")
    b = _check_matrix(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}.")

    unit_a = _normalise_rows(a, "a", np.float64)
    unit_b = _normalise_rows(b, "b", np.float64)
    return float(np.mean(np.sum(unit_a * unit_b, axis=1)))


def random_recall_at_k(n: int, k: int) -> float:
    """Return k / n, the expected recall@k of the true item among n keys ranked at random.

    Raises:
        ParameterError: n < 1, or k outside [1, n].
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ParameterError(f"n must be a positive integer number of keys, got {n!r}.")
    k = _check_k(k, 1, int(n), f"recall@k over n={n} keys")
    return k / int(n)
