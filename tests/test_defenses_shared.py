"""One contract test run over every registered defense, with no per-defense cases.

What varies comes only from registered metadata: ``example`` (parameters to use
when some have no default), ``identity`` (zero-strength parameters), ``randomness``
(which function consumes the key) and ``jittable``.
"""

import jax
import numpy as np
import pytest

from slime_def.defenses import DEFENSES, make_defense

ENTRIES = [DEFENSES.entries[name] for name in DEFENSES.entries]
COUNT, DIM = 300, 384


@pytest.fixture(scope="module")
def unit_vectors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((COUNT, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fit_and_apply(defense, x, fit_seed=0, apply_seed=1):
    state = defense.fit(x, key=jax.random.PRNGKey(fit_seed))
    return state, np.asarray(defense.apply(state, x, key=jax.random.PRNGKey(apply_seed)))


_OUTPUTS = {}


def cached_fit_and_apply(entry, x, fit_seed=0, apply_seed=1):
    """Return the state and output for the example spec, computed once per module run."""
    cache_key = (entry.name, fit_seed, apply_seed)
    if cache_key not in _OUTPUTS:
        _OUTPUTS[cache_key] = fit_and_apply(make_defense(entry.example_spec()), x, fit_seed, apply_seed)
    return _OUTPUTS[cache_key]


@pytest.fixture(params=ENTRIES, ids=lambda entry: entry.name)
def entry(request):
    return request.param


def test_output_shape_and_dtype(entry, unit_vectors):
    _, y = cached_fit_and_apply(entry, unit_vectors)
    described = make_defense(entry.example_spec()).describe(DIM)

    assert y.shape == (COUNT, described["output_dim"])
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y))


def test_describe_contract(entry):
    described = make_defense(entry.example_spec()).describe(DIM)

    assert isinstance(described["output_dim"], int)
    assert described["bytes_per_vector"] > 0
    cosine = described["expected_cosine"]
    assert cosine is None or 0.0 <= cosine <= 1.0


def test_jit_matches_eager(entry, unit_vectors):
    defense = make_defense(entry.example_spec())
    if not defense.jittable:
        pytest.skip(f"{entry.name} is registered as not jittable")
    state, eager = cached_fit_and_apply(entry, unit_vectors)
    jitted = jax.jit(defense.apply)(state, unit_vectors, key=jax.random.PRNGKey(1))

    np.testing.assert_allclose(np.asarray(jitted), eager, rtol=1e-5, atol=1e-6)


def test_same_keys_same_output(entry, unit_vectors):
    _, first = cached_fit_and_apply(entry, unit_vectors)
    _, second = fit_and_apply(make_defense(entry.example_spec()), unit_vectors)

    np.testing.assert_array_equal(first, second)


def test_other_keys_change_only_declared_randomness(entry, unit_vectors):
    _, base = cached_fit_and_apply(entry, unit_vectors, fit_seed=0, apply_seed=1)
    _, other_fit = cached_fit_and_apply(entry, unit_vectors, fit_seed=2, apply_seed=1)
    _, other_apply = cached_fit_and_apply(entry, unit_vectors, fit_seed=0, apply_seed=3)

    assert (not np.array_equal(base, other_fit)) == (entry.randomness == "fit")
    assert (not np.array_equal(base, other_apply)) == (entry.randomness == "apply")


def test_zero_strength_is_identity(entry, unit_vectors):
    if entry.identity is None:
        pytest.skip(f"{entry.name} has no zero-strength setting")
    defense = DEFENSES.get(entry.name)(**entry.identity)
    _, y = fit_and_apply(defense, unit_vectors)

    np.testing.assert_allclose(y, unit_vectors, atol=1e-6)
