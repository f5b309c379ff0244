"""Gaussian and Laplace noise against their analytic distributions, and their parameter checks."""

import math

import jax
import numpy as np
import pytest
from scipy import stats

from slime_def.defenses import make_defense
from slime_def.defenses.expected_cosine import gaussian_cosine_approximation, gaussian_expected_cosine
from slime_def.defenses.noise import gaussian, laplace
from slime_def.errors import ParameterError


def unit_vectors(count, dim, seed=0):
    x = np.random.default_rng(seed).standard_normal((count, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def apply_once(defense, x, seed=7):
    state = defense.fit(x, key=jax.random.PRNGKey(0))
    return np.asarray(defense.apply(state, x, key=jax.random.PRNGKey(seed)), dtype=np.float64)


def mean_cosine(x, y):
    cosines = np.sum(x * y, axis=1) / np.linalg.norm(y, axis=1)
    return cosines.mean(), cosines.std(ddof=1) / math.sqrt(len(cosines))


@pytest.mark.parametrize("sigma", [0.05, 0.3])
def test_gaussian_noise_std_matches_sigma(sigma):
    # sigma and sigma**2 differ by a factor of 3 to 20 here, so a squared scale fails at once.
    x = unit_vectors(2000, 64)
    noise = apply_once(gaussian(sigma=sigma, renormalize=False), x) - x

    assert abs(noise.std() / sigma - 1.0) < 0.02
    assert abs(noise.mean()) < 5 * sigma / math.sqrt(noise.size)


def test_gaussian_noise_is_normal():
    x = unit_vectors(500, 64)
    noise = apply_once(gaussian(sigma=0.1, renormalize=False), x) - x

    assert stats.kstest(noise.ravel()[:20000] / 0.1, "norm").pvalue > 1e-3


@pytest.mark.parametrize("dim, sigma", [(64, 0.05), (64, 0.3), (1280, 0.02), (1280, 0.1)])
def test_gaussian_mean_cosine_matches_describe(dim, sigma):
    x = unit_vectors(4000 if dim == 64 else 1000, dim)
    observed, standard_error = mean_cosine(x, apply_once(gaussian(sigma=sigma), x))
    described = gaussian(sigma=sigma).describe(dim)["expected_cosine"]

    assert abs(observed - described) < 5 * standard_error + 1e-6


@pytest.mark.parametrize("dim, sigma", [(64, 0.05), (64, 0.3), (1280, 0.02), (1280, 0.1)])
def test_gaussian_cosine_formula_is_close_at_large_dim(dim, sigma):
    exact = gaussian_expected_cosine(sigma, dim)
    approximation = 1.0 / math.sqrt(1.0 + dim * sigma**2)

    assert gaussian_cosine_approximation(sigma, dim) == pytest.approx(approximation, rel=1e-12)
    assert abs(exact - approximation) < (2e-3 if dim == 64 else 2e-4)


def test_expected_cosine_quadrature_matches_simulation_at_small_dim():
    rng = np.random.default_rng(3)
    x = np.zeros(3)
    x[0] = 1.0
    noisy = x + 1.0 * rng.standard_normal((400_000, 3))
    cosines = noisy[:, 0] / np.linalg.norm(noisy, axis=1)
    standard_error = cosines.std() / math.sqrt(len(cosines))

    assert abs(gaussian_expected_cosine(1.0, 3) - cosines.mean()) < 5 * standard_error


@pytest.mark.parametrize("dim, cosine", [(64, 0.8), (1280, 0.5), (1280, 0.95)])
def test_gaussian_cosine_target_is_met(dim, cosine):
    x = unit_vectors(4000 if dim == 64 else 1000, dim)
    defense = make_defense(f"gaussian(cosine={cosine})")
    observed, standard_error = mean_cosine(x, apply_once(defense, x))
    sigma = defense.describe(dim)["sigma"]

    assert abs(observed - cosine) < 5 * standard_error
    assert gaussian_expected_cosine(sigma, dim) == pytest.approx(cosine, abs=1e-9)


def test_gaussian_cosine_one_is_identity():
    x = unit_vectors(50, 32)

    np.testing.assert_allclose(apply_once(gaussian(cosine=1.0), x), x, atol=1e-6)


def test_gaussian_default_runs_without_parameters():
    defense = make_defense("gaussian")

    assert defense.describe(1280)["sigma"] == 0.02


def test_laplace_noise_std_and_tails():
    # Laplace noise has std sqrt(2) b and excess kurtosis 3; Gaussian noise would have 0.
    scale = 0.2
    x = unit_vectors(2000, 64)
    noise = apply_once(laplace(scale=scale, renormalize=False), x) - x

    assert abs(noise.std() / (math.sqrt(2.0) * scale) - 1.0) < 0.02
    assert abs(stats.kurtosis(noise.ravel()) - 3.0) < 0.3
    assert stats.kstest(noise.ravel()[:20000], "laplace", args=(0.0, scale)).pvalue > 1e-3


def test_laplace_mean_cosine_matches_describe_at_1280():
    x = unit_vectors(1000, 1280)
    observed, _ = mean_cosine(x, apply_once(laplace(scale=0.02), x))

    assert abs(observed - laplace(scale=0.02).describe(1280)["expected_cosine"]) < 1e-3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sigma": -0.1}, "sigma must be in"),
        ({"sigma": 0.1, "cosine": 0.9}, "not both"),
        ({"sigma": None}, "needs sigma"),
        ({"cosine": 0.0}, "cosine must be in"),
        ({"cosine": 1.5}, "cosine must be in"),
        ({"cosine": -0.2}, "cosine must be in"),
        ({"sigma": "0.1"}, "sigma must be a number"),
        ({"renormalize": "yes"}, "renormalize must be True or False"),
    ],
)
def test_gaussian_rejects_invalid_parameters(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        gaussian(**kwargs)


def test_gaussian_spec_rejects_sigma_and_cosine_together():
    with pytest.raises(ParameterError, match="not both"):
        make_defense("gaussian(sigma=0.02, cosine=0.9)")


def test_laplace_rejects_negative_scale():
    with pytest.raises(ParameterError, match="scale must be in"):
        laplace(scale=-1.0)
