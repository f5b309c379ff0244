"""Scalar, binary and product quantization against NumPy references."""

import math

import jax
import numpy as np
import pytest

from slime_def.defenses import make_defense
from slime_def.defenses.quantize import binary, pq, quantize
from slime_def.errors import ParameterError

KEY = jax.random.PRNGKey(0)


def unit_vectors(count, dim, seed=0):
    x = np.random.default_rng(seed).standard_normal((count, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fit_apply(defense, x, key=KEY):
    state = defense.fit(x, key=key)
    return state, np.asarray(defense.apply(state, x, key=key))


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_quantize_global_uses_bin_centres(bits):
    x = unit_vectors(400, 32)
    state, y = fit_apply(quantize(bits=bits), x)
    low, high = x.min(), x.max()
    step = (high - low) / 2**bits
    centres = low + (np.arange(2**bits) + 0.5) * step

    assert float(state["low"]) == pytest.approx(low)
    assert float(state["high"]) == pytest.approx(high)
    assert np.unique(y).size <= 2**bits
    assert np.abs(y[:, :, None] - centres).min(axis=-1).max() < 1e-5
    assert np.abs(y - x).max() <= step / 2 + 1e-6


def test_quantize_per_dim_ranges():
    x = unit_vectors(400, 32)
    x[:, 3] *= 0.01  # a narrow coordinate keeps its own fine range
    state, y = fit_apply(quantize(bits=4, ranges="per_dim"), x)
    step = (x.max(axis=0) - x.min(axis=0)) / 16

    assert state["low"].shape == (32,)
    np.testing.assert_allclose(np.asarray(state["low"]), x.min(axis=0), rtol=1e-6)
    assert np.all(np.abs(y - x) <= step / 2 + 1e-6)


def test_quantize_clip_percent_fits_percentiles():
    x = unit_vectors(1000, 16)
    state, y = fit_apply(quantize(bits=2, clip_percent=5.0), x)
    low, high = np.percentile(x, 5.0), np.percentile(x, 95.0)
    step = (high - low) / 4

    assert float(state["low"]) == pytest.approx(low, rel=1e-5)
    assert float(state["high"]) == pytest.approx(high, rel=1e-5)
    assert y.min() == pytest.approx(low + step / 2, rel=1e-5)
    assert y.max() == pytest.approx(high - step / 2, rel=1e-5)


def test_quantize_constant_coordinate_is_kept():
    x = unit_vectors(100, 8)
    x[:, 2] = 0.25
    _, y = fit_apply(quantize(bits=3, ranges="per_dim"), x)

    np.testing.assert_allclose(y[:, 2], 0.25)


@pytest.mark.parametrize("bits, expected", [(8, 1280), (4, 640), (2, 320), (1, 160)])
def test_quantize_bytes_per_vector(bits, expected):
    assert quantize(bits=bits).describe(1280)["bytes_per_vector"] == expected


@pytest.mark.parametrize("bits", [0, 9, 2.5, -1])
def test_quantize_rejects_bits(bits):
    with pytest.raises(ParameterError, match="bits must be"):
        quantize(bits=bits)


def test_quantize_rejects_unknown_ranges():
    with pytest.raises(ParameterError, match="ranges must be one of global, per_dim"):
        quantize(ranges="local")


def test_quantize_rejects_clip_percent():
    with pytest.raises(ParameterError, match="clip_percent must be in"):
        quantize(clip_percent=50.0)


def test_binary_keeps_signs_with_unit_norm():
    x = unit_vectors(100, 64)
    _, y = fit_apply(binary(), x)

    np.testing.assert_array_equal(np.sign(y), np.where(x >= 0, 1.0, -1.0))
    np.testing.assert_allclose(np.abs(y), 1.0 / math.sqrt(64))
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-6)
    assert binary().describe(1280)["bytes_per_vector"] == 160


def nearest_centroid_decode(x, centroids):
    """Reconstruct each sub-vector by its nearest centroid, by brute force."""
    m, _, dsub = centroids.shape
    parts = []
    for j in range(m):
        sub = x[:, j * dsub:(j + 1) * dsub]
        distances = ((sub[:, None, :] - centroids[j][None]) ** 2).sum(-1)
        parts.append(centroids[j][distances.argmin(axis=1)])
    return np.concatenate(parts, axis=1)


def test_pq_matches_brute_force_decoding():
    x = unit_vectors(600, 64)
    state, y = fit_apply(pq(m=8, nbits=6), x)
    centroids = np.asarray(state["centroids"])

    assert centroids.shape == (8, 64, 8)
    np.testing.assert_allclose(y, nearest_centroid_decode(x, centroids), atol=1e-6)


def test_pq_codebook_depends_on_key():
    x = unit_vectors(300, 32)
    first, _ = fit_apply(pq(m=4, nbits=4), x, key=jax.random.PRNGKey(1))
    again, _ = fit_apply(pq(m=4, nbits=4), x, key=jax.random.PRNGKey(1))
    other, _ = fit_apply(pq(m=4, nbits=4), x, key=jax.random.PRNGKey(2))

    np.testing.assert_array_equal(np.asarray(first["centroids"]), np.asarray(again["centroids"]))
    assert not np.array_equal(np.asarray(first["centroids"]), np.asarray(other["centroids"]))


def test_pq_rejects_m_not_dividing_dim():
    defense = make_defense("pq(m=7)")

    with pytest.raises(ParameterError, match=r"m=7 and dimension 64"):
        defense.fit(unit_vectors(300, 64), key=KEY)


def test_pq_rejects_too_few_training_vectors():
    with pytest.raises(ParameterError, match="at least 256 training vectors, got 100"):
        pq(m=4, nbits=8).fit(unit_vectors(100, 16), key=KEY)


@pytest.mark.parametrize("kwargs", [{"m": 0}, {"nbits": 0}, {"nbits": 17}, {"m": 2.5}])
def test_pq_rejects_invalid_parameters(kwargs):
    with pytest.raises(ParameterError):
        pq(**kwargs)


def test_pq_bytes_per_vector():
    assert pq(m=32, nbits=8).describe(1280)["bytes_per_vector"] == 32
    assert pq(m=16, nbits=4).describe(1280)["bytes_per_vector"] == 8
