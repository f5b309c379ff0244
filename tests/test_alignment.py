import numpy as np
import pytest

from slime_def.attack.alignment import align, fit_lstsq, fit_procrustes, fit_ridge, make_aligner
from slime_def.errors import ParameterError, SpecError


def _pairs(pairs, m, n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((pairs, m)).astype(np.float32)
    y = rng.standard_normal((pairs, n)).astype(np.float32)
    return x, y


@pytest.mark.parametrize("pairs", [20, 200])  # fewer and more pairs than dimensions
def test_ridge_matches_numpy_normal_equations(pairs):
    x, y = _pairs(pairs, 64, 24)
    reference = np.linalg.solve(x.T.astype(np.float64) @ x + 0.3 * np.eye(64), x.T.astype(np.float64) @ y)
    np.testing.assert_allclose(np.asarray(fit_ridge(x, y, 0.3)), reference, atol=2e-4)


@pytest.mark.parametrize("pairs", [20, 200])
def test_lstsq_matches_numpy_pinv(pairs):
    x, y = _pairs(pairs, 64, 24, seed=1)
    reference = np.linalg.pinv(x.astype(np.float64)) @ y
    np.testing.assert_allclose(np.asarray(fit_lstsq(x, y)), reference, atol=2e-4)


def test_lstsq_recovers_exact_linear_map():
    x, _ = _pairs(300, 32, 1, seed=2)
    w_true = np.random.default_rng(3).standard_normal((32, 16)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(fit_lstsq(x, x @ w_true)), w_true, atol=1e-3)


def test_procrustes_recovers_rotation():
    rng = np.random.default_rng(4)
    rotation, _ = np.linalg.qr(rng.standard_normal((24, 24)))
    x = rng.standard_normal((100, 24)).astype(np.float32)
    w = np.asarray(fit_procrustes(x, (x @ rotation).astype(np.float32)))
    np.testing.assert_allclose(w, rotation, atol=1e-4)


def test_procrustes_is_semi_orthogonal_between_dimensions():
    x, y = _pairs(50, 40, 16, seed=5)
    w = np.asarray(fit_procrustes(x, y))
    assert w.shape == (40, 16)
    np.testing.assert_allclose(w.T @ w, np.eye(16), atol=1e-4)


def test_align_is_matrix_product():
    x, y = _pairs(10, 8, 4, seed=6)
    w = np.random.default_rng(7).standard_normal((8, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(align(w, x)), x @ w, rtol=1e-5, atol=1e-5)


def test_make_aligner_spec_is_canonical():
    assert make_aligner("ridge(l2=1)").spec == "ridge(l2=1.0)"
    assert make_aligner("lstsq").spec == "lstsq"


def test_ridge_rejects_negative_penalty():
    with pytest.raises(ParameterError, match="l2"):
        make_aligner("ridge(l2=-1)")


def test_unknown_aligner_lists_choices():
    with pytest.raises(SpecError, match="lstsq, procrustes, ridge"):
        make_aligner("cca")
