"""DP mechanisms: the analytic Gaussian calibration, d_chi radii and Purkayastha angles."""

import math

import jax
import mpmath
import numpy as np
import pytest
from scipy import integrate, stats

from slime_def.defenses.analytic_gaussian import (
    analytic_gaussian_sigma,
    classic_gaussian_sigma,
    gaussian_mechanism_delta,
)
from slime_def.defenses.dp import dchi, gaussian_dp
from slime_def.defenses.purkayastha import purkayastha, sample_angles
from slime_def.errors import ParameterError

EPSILONS = [1e-3, 0.1, 0.5, 1.0, 3.0, 10.0, 100.0, 1000.0, 1e4]
DELTAS = [1e-12, 1e-5, 1e-2, 0.5]


def unit_vectors(count, dim, seed=0):
    x = np.random.default_rng(seed).standard_normal((count, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def apply_once(defense, x, seed=11):
    state = defense.fit(x, key=jax.random.PRNGKey(0))
    return np.asarray(defense.apply(state, x, key=jax.random.PRNGKey(seed)), dtype=np.float64)


def hockey_stick_delta(epsilon, sigma, sensitivity):
    """delta as the integral of max(0, p - e^eps q) for p = N(0, s^2), q = N(Delta, s^2), in 40 digits.

    This is the definition of the privacy profile, evaluated by quadrature: it
    does not use the closed form that the library implements.
    """
    with mpmath.workdps(40):
        eps, s, shift = mpmath.mpf(epsilon), mpmath.mpf(sigma), mpmath.mpf(sensitivity)
        # p >= e^eps q exactly when y <= shift / 2 - eps s^2 / shift.
        crossing = shift / 2 - eps * s**2 / shift

        def excess(y):
            p = mpmath.npdf(y, 0, s)
            q = mpmath.npdf(y, shift, s)
            return p - mpmath.exp(eps) * q

        width = 12 * s
        return mpmath.quad(excess, [crossing - width, crossing - s, crossing]) + mpmath.quad(
            excess, [-mpmath.inf, crossing - width]
        )


@pytest.mark.parametrize("epsilon", EPSILONS)
@pytest.mark.parametrize("delta", DELTAS)
def test_analytic_sigma_meets_delta_exactly(epsilon, delta):
    sigma = analytic_gaussian_sigma(epsilon, delta, 2.0)
    reference = float(hockey_stick_delta(epsilon, sigma, 2.0))

    assert abs(reference - delta) <= 1e-8 * delta
    assert gaussian_mechanism_delta(epsilon, sigma, 2.0) <= delta


@pytest.mark.parametrize("epsilon, delta", [(0.1, 1e-5), (1.0, 1e-5), (50.0, 1e-8)])
def test_analytic_sigma_is_smallest_valid(epsilon, delta):
    sigma = analytic_gaussian_sigma(epsilon, delta, 2.0)
    smaller = sigma * (1.0 - 1e-9)

    assert float(hockey_stick_delta(epsilon, smaller, 2.0)) > delta


def test_analytic_sigma_scales_with_sensitivity():
    # The privacy condition depends on sigma / sensitivity only.
    assert analytic_gaussian_sigma(1.0, 1e-5, 1.0) * 2.0 == pytest.approx(
        analytic_gaussian_sigma(1.0, 1e-5, 2.0), rel=1e-10
    )


@pytest.mark.parametrize("epsilon", [0.01, 0.1, 0.5, 0.9])
def test_classic_sigma_is_looser_below_one(epsilon):
    assert classic_gaussian_sigma(epsilon, 1e-5) > analytic_gaussian_sigma(epsilon, 1e-5)


def test_classic_sigma_is_not_private_at_large_epsilon():
    classic = classic_gaussian_sigma(10.0, 1e-5)

    assert float(hockey_stick_delta(10.0, classic, 2.0)) > 1e-5


def test_gaussian_dp_noise_std_matches_calibration():
    defense = gaussian_dp(epsilon=50.0, delta=1e-5, renormalize=False)
    sigma = defense.describe(64)["sigma"]
    x = unit_vectors(2000, 64)
    noise = apply_once(defense, x) - x

    assert sigma == analytic_gaussian_sigma(50.0, 1e-5, 2.0)
    assert 0.1 < sigma < 0.5  # far from 1, so a squared sigma would differ by a factor > 2
    assert abs(noise.std() / sigma - 1.0) < 0.02


def test_gaussian_dp_renormalized_cosine_matches_describe():
    defense = gaussian_dp(epsilon=1000.0, delta=1e-5)
    x = unit_vectors(1000, 1280)
    y = apply_once(defense, x)
    cosines = np.sum(x * y, axis=1)

    assert np.allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    assert abs(cosines.mean() - defense.describe(1280)["expected_cosine"]) < 5 * cosines.std() / math.sqrt(1000)


@pytest.mark.parametrize("dim, epsilon", [(64, 100.0), (1280, 2000.0)])
def test_dchi_radius_is_gamma(dim, epsilon):
    x = unit_vectors(3000 if dim == 64 else 800, dim)
    noise = apply_once(dchi(epsilon=epsilon, renormalize=False), x) - x
    radius = np.linalg.norm(noise, axis=1)

    result = stats.kstest(radius, "gamma", args=(dim, 0.0, 1.0 / epsilon))
    assert result.pvalue > 1e-3


def test_dchi_radius_test_rejects_wrong_scale():
    # The same KS test must reject a radius drawn with scale 1/epsilon^2 or shape d - 1.
    x = unit_vectors(3000, 64)
    noise = apply_once(dchi(epsilon=100.0, renormalize=False), x) - x
    radius = np.linalg.norm(noise, axis=1)

    assert stats.kstest(radius, "gamma", args=(64, 0.0, 1.0 / 100.0**2)).pvalue < 1e-6
    assert stats.kstest(radius, "gamma", args=(63, 0.0, 1.0 / 100.0)).pvalue < 1e-3


def test_dchi_direction_is_uniform():
    # For a uniform direction u, <u, x> has mean 0 and variance 1/d.
    x = unit_vectors(4000, 64)
    noise = apply_once(dchi(epsilon=100.0, renormalize=False), x) - x
    along = np.sum(noise * x, axis=1) / np.linalg.norm(noise, axis=1)

    assert abs(along.mean()) < 5 / math.sqrt(64 * 4000)
    assert abs(along.var() * 64 - 1.0) < 0.1


def test_dchi_mean_cosine_matches_describe():
    defense = dchi(epsilon=3000.0)
    x = unit_vectors(1000, 1280)
    cosines = np.sum(x * apply_once(defense, x), axis=1)

    assert abs(cosines.mean() - defense.describe(1280)["expected_cosine"]) < 5 * cosines.std() / math.sqrt(1000)


def purkayastha_bin_probabilities(epsilon, dim, edges):
    """Probabilities of angle bins under exp(-eps t) sin(t)^(d-2), by adaptive quadrature."""
    mode = math.atan2(dim - 2, epsilon)
    peak = -epsilon * mode + (dim - 2) * math.log(math.sin(mode)) if dim > 2 else 0.0

    def density(t):
        if t <= 0.0 or t >= math.pi:
            return 0.0 if dim > 2 else math.exp(-epsilon * t)
        return math.exp(-epsilon * t + (dim - 2) * math.log(math.sin(t)) - peak)

    masses = np.array([
        integrate.quad(density, low, high, epsabs=0.0, epsrel=1e-10, limit=200)[0]
        for low, high in zip(edges[:-1], edges[1:])
    ])
    return masses / masses.sum()


def angle_bins(epsilon, dim, count=40):
    """Bin edges over [0, pi] that are fine where the angle density has its mass."""
    mode = math.atan2(dim - 2, epsilon)
    width = math.sin(mode) / math.sqrt(dim - 2) if dim > 2 else 1.0 / epsilon
    inner = np.linspace(max(mode - 5 * width, 0.0), min(mode + 5 * width, math.pi), count + 1)
    return np.unique(np.concatenate([[0.0], inner, [math.pi]]))


def chi_square_pvalue(angles, epsilon, dim):
    edges = angle_bins(epsilon, dim)
    expected = purkayastha_bin_probabilities(epsilon, dim, edges) * len(angles)
    observed, _ = np.histogram(angles, bins=edges)
    keep = expected >= 5  # the chi-square approximation needs populated bins
    observed_kept = np.append(observed[keep], observed[~keep].sum())
    expected_kept = np.append(expected[keep], expected[~keep].sum())
    if expected_kept[-1] == 0:
        observed_kept, expected_kept = observed_kept[:-1], expected_kept[:-1]
    return stats.chisquare(observed_kept, expected_kept * observed_kept.sum() / expected_kept.sum()).pvalue


@pytest.mark.parametrize("dim, epsilon", [(3, 2.0), (16, 20.0), (64, 50.0), (1280, 1000.0), (1280, 1e5)])
def test_purkayastha_angles_fit_density(dim, epsilon):
    angles = np.asarray(sample_angles(jax.random.PRNGKey(5), (100_000,), epsilon, dim), dtype=np.float64)

    assert chi_square_pvalue(angles, epsilon, dim) > 1e-3


@pytest.mark.parametrize("dim, epsilon", [(16, 20.0), (64, 50.0)])
def test_purkayastha_test_rejects_wrong_sine_power(dim, epsilon):
    # Angles drawn with sin^(d-1) (one power too many) or with no sine factor must fail.
    one_too_many = np.asarray(sample_angles(jax.random.PRNGKey(5), (100_000,), epsilon, dim + 1))
    no_sine = np.asarray(sample_angles(jax.random.PRNGKey(5), (100_000,), epsilon, 2))

    assert chi_square_pvalue(one_too_many.astype(np.float64), epsilon, dim) < 1e-6
    assert chi_square_pvalue(no_sine.astype(np.float64), epsilon, dim) < 1e-6


def test_purkayastha_output_angles_fit_density():
    dim, epsilon = 64, 50.0
    x = unit_vectors(20_000, dim)
    y = apply_once(purkayastha(epsilon=epsilon), x)
    along = np.sum(x * y, axis=1)
    across = np.linalg.norm(y - along[:, None] * x, axis=1)
    angles = np.arctan2(across, along)

    assert np.allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    assert chi_square_pvalue(angles, epsilon, dim) > 1e-3


def test_purkayastha_direction_is_uniform_around_input():
    # The orthogonal part must be uniform: with x = e_1, its mean is 0 and each
    # other coordinate has second moment 1/(d-1).
    dim = 16
    x = np.zeros((20_000, dim), np.float32)
    x[:, 0] = 1.0
    y = apply_once(purkayastha(epsilon=10.0), x)
    across = y[:, 1:] / np.linalg.norm(y[:, 1:], axis=1, keepdims=True)

    assert np.abs(across.mean(axis=0)).max() < 5 / math.sqrt(20_000 * (dim - 1))
    assert np.abs((across**2).mean(axis=0) * (dim - 1) - 1.0).max() < 0.1


@pytest.mark.parametrize("dim, epsilon", [(64, 50.0), (1280, 1000.0)])
def test_purkayastha_mean_cosine_matches_describe(dim, epsilon):
    defense = purkayastha(epsilon=epsilon)
    x = unit_vectors(5000 if dim == 64 else 1000, dim)
    cosines = np.sum(x * apply_once(defense, x), axis=1)

    assert abs(cosines.mean() - defense.describe(dim)["expected_cosine"]) < 5 * cosines.std() / math.sqrt(len(x))


@pytest.mark.parametrize("factory", [dchi, purkayastha])
@pytest.mark.parametrize("epsilon", [0.0, -1.0, math.inf])
def test_epsilon_must_be_positive(factory, epsilon):
    with pytest.raises(ParameterError, match="epsilon must be in"):
        factory(epsilon=epsilon)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epsilon": 0.0, "delta": 1e-5}, "epsilon must be in"),
        ({"epsilon": -2.0, "delta": 1e-5}, "epsilon must be in"),
        ({"epsilon": 1.0, "delta": 0.0}, "delta must be in"),
        ({"epsilon": 1.0, "delta": 1.0}, "delta must be in"),
        ({"epsilon": 1.0, "delta": -0.1}, "delta must be in"),
        ({"epsilon": 1.0, "delta": 1e-5, "sensitivity": 0.0}, "sensitivity must be in"),
    ],
)
def test_gaussian_dp_rejects_invalid_parameters(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        gaussian_dp(**kwargs)
