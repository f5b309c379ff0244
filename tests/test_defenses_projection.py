"""Dimensionality defenses against NumPy references and their distributions."""

import math

import jax
import numpy as np
import pytest

from slime_def.defenses import make_defense
from slime_def.defenses.projection import pca, random_projection, random_rotation, shuffle, truncate
from slime_def.errors import ParameterError

KEY = jax.random.PRNGKey(0)


def unit_vectors(count, dim, seed=0):
    x = np.random.default_rng(seed).standard_normal((count, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fit_apply(defense, x, key=KEY):
    state = defense.fit(x, key=key)
    return state, np.asarray(defense.apply(state, x, key=key))


def test_truncate_keeps_normalised_prefix():
    x = unit_vectors(50, 64)
    _, y = fit_apply(truncate(dim=16), x)
    prefix = x[:, :16] / np.linalg.norm(x[:, :16], axis=1, keepdims=True)

    np.testing.assert_allclose(y, prefix, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["truncate", "pca", "random_projection"])
def test_dim_above_input_rejected_at_fit(name):
    defense = make_defense(f"{name}(dim=100)")

    with pytest.raises(ParameterError, match=r"dim=100.*got 64"):
        defense.fit(unit_vectors(300, 64), key=KEY)


@pytest.mark.parametrize("name", ["truncate", "pca", "random_projection"])
@pytest.mark.parametrize("dim", [0, -3, 2.5])
def test_dim_must_be_positive_integer(name, dim):
    with pytest.raises(ParameterError, match="dim must be"):
        make_defense(f"{name}(dim={dim})")


def test_pca_matches_numpy_svd():
    x = unit_vectors(400, 32)
    x[:, 0] += 0.5  # a non-zero mean, which PCA must remove
    state, y = fit_apply(pca(dim=5), x)

    centred = x.astype(np.float64) - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reference = centred @ vt[:5].T
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    signs = np.sign(np.sum(reference * y, axis=0))  # components are defined up to sign

    np.testing.assert_allclose(y, reference * signs, atol=1e-4)
    np.testing.assert_allclose(np.asarray(state["mean"]), x.mean(axis=0), atol=1e-6)


def test_pca_rejects_too_few_vectors():
    with pytest.raises(ParameterError, match="more than 20 fitting vectors"):
        pca(dim=20).fit(unit_vectors(15, 32), key=KEY)


def test_gaussian_projection_entries_have_variance_one_over_dim():
    state = random_projection(dim=64).fit(unit_vectors(10, 512), key=KEY)
    matrix = np.asarray(state["matrix"])

    assert matrix.shape == (512, 64)
    assert abs(matrix.std() * math.sqrt(64) - 1.0) < 0.02
    assert abs(matrix.mean()) < 5 / math.sqrt(64 * matrix.size)


@pytest.mark.parametrize("density, expected", [(None, 1 / math.sqrt(512)), (1 / 3, 1 / 3)])
def test_sparse_projection_density_and_values(density, expected):
    state = random_projection(dim=64, kind="sparse", density=density).fit(unit_vectors(10, 512), key=KEY)
    matrix = np.asarray(state["matrix"])
    nonzero = matrix[matrix != 0]

    assert abs(nonzero.size / matrix.size - expected) < 5 * math.sqrt(expected / matrix.size)
    np.testing.assert_allclose(np.abs(nonzero), 1 / math.sqrt(expected * 64), rtol=1e-5)
    assert abs(matrix.var() * 64 - 1.0) < 0.05


def test_projection_rejects_invalid_kind_and_density():
    with pytest.raises(ParameterError, match="kind must be one of gaussian, sparse"):
        random_projection(kind="dense")
    with pytest.raises(ParameterError, match="density applies only to kind='sparse'"):
        random_projection(density=0.1)
    with pytest.raises(ParameterError, match="density must be in"):
        random_projection(kind="sparse", density=0.0)


def test_rotation_is_orthogonal_and_keeps_distances():
    x = unit_vectors(100, 48)
    state, y = fit_apply(random_rotation(), x)
    matrix = np.asarray(state["matrix"], dtype=np.float64)

    np.testing.assert_allclose(matrix.T @ matrix, np.eye(48), atol=1e-5)
    np.testing.assert_allclose(y @ y.T, x @ x.T, atol=1e-5)


def test_rotation_is_haar_distributed():
    # Without the QR sign fix the top-left entry has mean about -0.4 at d = 4; Haar gives 0.
    defense = random_rotation()
    x = unit_vectors(4, 4)
    keys = jax.random.split(KEY, 2000)
    corners = jax.vmap(lambda key: defense.fit(x, key=key)["matrix"][0, 0])(keys)

    assert abs(float(np.mean(corners))) < 5 * 0.5 / math.sqrt(2000)


def test_shuffle_permutes_coordinates():
    x = unit_vectors(20, 32)
    state, y = fit_apply(shuffle(), x)
    permutation = np.asarray(state["permutation"])

    np.testing.assert_array_equal(np.sort(permutation), np.arange(32))
    np.testing.assert_array_equal(y, x[:, permutation])
