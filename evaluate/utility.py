"""Utility metrics on (defended) embeddings: category precision@k and linear-probe accuracy."""

from __future__ import annotations

import math

import numpy as np

from slime_def.errors import ParameterError

from .neighbourhood import _check_k, _check_matrix, knn_indices


def _check_labels(labels: object, n_rows: int, name: str, rows_of: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of labels, got shape {array.shape}.")
    if array.shape[0] != n_rows:
        raise ValueError(f"{name} has {array.shape[0]} labels but {rows_of} has {n_rows} rows. Pass one label per row.")
    return array


def category_precision_at_k(x: np.ndarray, categories: object, k: int) -> float:
    """Return the mean fraction of each item's k nearest neighbours that share its category.

    Neighbours are the k most cosine-similar other items of ``x`` (the item itself is
    excluded), found as in :func:`~slime_def.evaluate.neighbourhood.knn_indices`. Exact
    similarity ties at the k-th place are broken by faiss. A random embedding scores about
    the share of same-category pairs, sum_c n_c (n_c - 1) / (N (N - 1)).

    Args:
        x: (N, d) item vectors.
        categories: N labels (ints or strings), one per row of ``x``.
        k: neighbours per item, in [1, N - 1].

    Returns:
        Category precision@k in [0, 1].

    Raises:
        ParameterError: k outside [1, N - 1].
        ValueError: label count differs from the row count, or invalid arrays.
    """
    x = _check_matrix(x, "x")
    labels = _check_labels(categories, x.shape[0], "categories", "x")
    k = _check_k(k, 1, x.shape[0] - 1, f"excluding each item from its own list, N={x.shape[0]} items")

    neighbours = knn_indices(x, k)
    same_category = labels[neighbours] == labels[:, None]
    return float(np.mean(same_category))


def linear_probe_accuracy(
    train_x: np.ndarray,
    train_y: object,
    test_x: np.ndarray,
    test_y: object,
    *,
    l2: float = 1.0,
) -> float:
    """Fit a ridge classifier on one-hot labels in closed form and return its test accuracy.

    With C classes (the distinct values of ``train_y``, sorted), the one-hot targets Y
    (n, C) are regressed on the training features X (n, d) with an unpenalised intercept.
    Features and targets are centred on their training means (Xc, Yc), and the weights are

        W = (Xc^T Xc + l2 I)^-1 Xc^T Yc,

    computed in float64, in the equivalent form W = Xc^T (Xc Xc^T + l2 I)^-1 Yc when d > n.
    A test item is assigned the class with the largest score (x - mean_x) W + mean_y. Exact
    score ties go to the first class in sorted order. Features are used as given, with no
    normalisation. A test label that never occurs in ``train_y`` cannot be predicted and
    counts as an error.

    Args:
        train_x: (n_train, d) training features.
        train_y: n_train class labels (ints or strings).
        test_x: (n_test, d) test features.
        test_y: n_test class labels.
        l2: ridge penalty, a finite number > 0, in units of squared feature scale.

    Returns:
        Accuracy in [0, 1]: the fraction of test items whose predicted class equals the label.

    Raises:
        ParameterError: l2 is not a finite positive number.
        ValueError: label counts differ from row counts, feature dimensions differ, or
            invalid arrays.
    """
    if isinstance(l2, bool) or not isinstance(l2, (int, float, np.floating, np.integer)) or not math.isfinite(l2) or l2 <= 0:
        raise ParameterError(f"l2 must be a finite number > 0, got {l2!r}.")
    train_x = _check_matrix(train_x, "train_x").astype(np.float64)
    test_x = _check_matrix(test_x, "test_x").astype(np.float64)
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"train_x and test_x must have the same feature dimension, got {train_x.shape[1]} and {test_x.shape[1]}."
        )
    train_labels = _check_labels(train_y, train_x.shape[0], "train_y", "train_x")
    test_labels = _check_labels(test_y, test_x.shape[0], "test_y", "test_x")

    classes, train_class_index = np.unique(train_labels, return_inverse=True)
    targets = np.eye(classes.size)[train_class_index]

    weights, feature_mean, target_mean = _fit_ridge(train_x, targets, float(l2))

    scores = (test_x - feature_mean) @ weights + target_mean
    predicted = classes[np.argmax(scores, axis=1)]
    return float(np.mean(predicted == test_labels))


def _fit_ridge(features: np.ndarray, targets: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (W, mean_x, mean_y) of ridge regression with an unpenalised intercept."""
    feature_mean = features.mean(axis=0)
    target_mean = targets.mean(axis=0)
    centred_x = features - feature_mean
    centred_y = targets - target_mean
    n_rows, dim = centred_x.shape

    # Primal and dual forms give the same W for l2 > 0, so solve the smaller system.
    if dim <= n_rows:
        gram = centred_x.T @ centred_x + l2 * np.eye(dim)
        weights = np.linalg.solve(gram, centred_x.T @ centred_y)
    else:
        kernel = centred_x @ centred_x.T + l2 * np.eye(n_rows)
        weights = centred_x.T @ np.linalg.solve(kernel, centred_y)
    return weights, feature_mean, target_mean
