"""Spec strings, chains, user-registered defenses, entry-point plug-ins and the `defenses` command."""

import importlib.metadata
import json
import logging
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

from slime_def.cli.defenses import defenses as defenses_command
from slime_def.defenses import DEFENSES, Defense, EMPTY_STATE, make_defense, register_defense
from slime_def.defenses.base import ENTRY_POINT_GROUP
from slime_def.errors import SlimeDefError, SpecError

KEY = jax.random.PRNGKey(0)


def unit_vectors(count, dim, seed=0):
    x = np.random.default_rng(seed).standard_normal((count, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def cleanup_names():
    names = []
    yield names
    for name in names:
        DEFENSES.unregister(name)


def scale_defense(factor: float = 2.0) -> Defense:
    """Multiply every vector by ``factor``."""

    def fit(x, *, key):
        return EMPTY_STATE

    def apply(state, x, *, key):
        return jnp.asarray(x, jnp.float32) * factor

    def describe(dim):
        return {"output_dim": dim, "expected_cosine": 1.0, "bytes_per_vector": 4 * dim}

    return Defense("scale", fit, apply, describe)


def test_chain_threads_fitted_state():
    x = unit_vectors(300, 64)
    chained = make_defense("quantize(bits=2)|pca(dim=8)")
    states = chained.fit(x, key=KEY)

    quantizer = make_defense("quantize(bits=2)")
    quantized = quantizer.apply(quantizer.fit(x, key=KEY), x, key=KEY)

    assert chained.spec == "quantize(bits=2)|pca(dim=8)"
    assert len(states) == 2
    np.testing.assert_allclose(np.asarray(states[1]["mean"]), np.asarray(quantized).mean(axis=0), atol=1e-6)


def test_chain_output_equals_parts_in_sequence():
    x = unit_vectors(300, 384)
    chained = make_defense("quantize(bits=4)|random_projection(dim=256)")
    states = chained.fit(x, key=KEY)
    y = chained.apply(states, x, key=jax.random.PRNGKey(1))

    quantizer, projection = make_defense("quantize(bits=4)"), make_defense("random_projection(dim=256)")
    expected = projection.apply(states[1], quantizer.apply(states[0], x, key=KEY), key=KEY)

    assert y.shape == (300, 256)
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected), atol=1e-6)


def test_chain_jits_and_describes():
    x = unit_vectors(300, 384)
    chained = make_defense("quantize(bits=4)|random_projection(dim=256)")
    states = chained.fit(x, key=KEY)
    eager = chained.apply(states, x, key=KEY)
    jitted = jax.jit(chained.apply)(states, x, key=KEY)
    described = chained.describe(384)

    assert chained.jittable
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-6)
    assert described["output_dim"] == 256
    assert described["bytes_per_vector"] == 1024
    assert described["expected_cosine"] is None
    assert [part["output_dim"] for part in described["parts"]] == [384, 256]


def test_chain_with_one_noise_part_reports_its_cosine():
    described = make_defense("none|gaussian(sigma=0.1)").describe(64)

    assert described["expected_cosine"] == make_defense("gaussian(sigma=0.1)").describe(64)["expected_cosine"]


def test_chain_with_pq_is_not_jittable():
    assert not make_defense("pq(m=8)|shuffle").jittable


def test_unknown_defense_lists_known_names():
    with pytest.raises(SpecError, match="unknown defense 'gausian'.*Did you mean 'gaussian'.*Known:"):
        make_defense("gausian(sigma=0.1)")


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(SpecError, match="unknown parameter 'sigm' for defense 'gaussian'; valid: sigma, cosine"):
        make_defense("gaussian(sigm=0.1)")


def test_missing_required_parameter_shows_example():
    with pytest.raises(SpecError, match=r"missing value for epsilon, delta in defense 'gaussian_dp'; give it in the spec, for example 'gaussian_dp\(epsilon="):
        make_defense("gaussian_dp")


def test_user_defense_registers_from_python(cleanup_names):
    cleanup_names.append("test_scale")
    register_defense("test_scale", family="test", summary="Scale vectors.", identity={"factor": 1.0})(scale_defense)
    defense = make_defense("test_scale(factor=3.0)")
    x = unit_vectors(4, 8)

    assert DEFENSES.entries["test_scale"].family == "test"
    np.testing.assert_allclose(np.asarray(defense.apply(EMPTY_STATE, x, key=KEY)), 3.0 * x, rtol=1e-6)


def test_registering_a_name_twice_fails(cleanup_names):
    cleanup_names.append("test_twice")
    register_defense("test_twice", family="test", summary="first")(scale_defense)

    with pytest.raises(SlimeDefError, match="already registered"):
        register_defense("test_twice", family="test", summary="second")(scale_defense)


def test_register_rejects_unknown_randomness():
    with pytest.raises(ValueError, match="randomness must be one of none, fit, apply"):
        register_defense("test_bad", family="test", summary="bad", randomness="sometimes")


def fake_entry_points(monkeypatch, *entry_points):
    def entry_points_for(**selection):
        return [ep for ep in entry_points if ep.group == selection.get("group")]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points_for)


def write_plugin(tmp_path, monkeypatch, module_name, source):
    (tmp_path / f"{module_name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_entry_point_module_registers_itself(tmp_path, monkeypatch, cleanup_names):
    cleanup_names.append("test_plugin_flip")
    write_plugin(tmp_path, monkeypatch, "slime_def_test_plugin_flip", """
        from slime_def.defenses import Defense, EMPTY_STATE, register_defense

        @register_defense("test_plugin_flip", family="plug-in test", summary="Negate vectors.")
        def flip() -> Defense:
            return Defense(
                "test_plugin_flip",
                lambda x, *, key: EMPTY_STATE,
                lambda state, x, *, key: -x,
                lambda dim: {"output_dim": dim, "expected_cosine": 0.0, "bytes_per_vector": 4 * dim},
            )
    """)
    fake_entry_points(monkeypatch, importlib.metadata.EntryPoint(
        name="test_plugin_flip", value="slime_def_test_plugin_flip:flip", group=ENTRY_POINT_GROUP))
    defense = make_defense("test_plugin_flip")
    x = unit_vectors(3, 4)

    assert DEFENSES.entries["test_plugin_flip"].family == "plug-in test"
    np.testing.assert_array_equal(np.asarray(defense.apply(EMPTY_STATE, x, key=KEY)), -x)


def test_entry_point_plain_factory_is_registered(tmp_path, monkeypatch, cleanup_names):
    cleanup_names.append("test_plugin_half")
    write_plugin(tmp_path, monkeypatch, "slime_def_test_plugin_half", """
        from slime_def.defenses import Defense, EMPTY_STATE

        def half(factor=0.5):
            '''Scale vectors by one half.'''
            return Defense(
                "test_plugin_half",
                lambda x, *, key: EMPTY_STATE,
                lambda state, x, *, key: x * factor,
                lambda dim: {"output_dim": dim, "expected_cosine": 1.0, "bytes_per_vector": 4 * dim},
            )
    """)
    fake_entry_points(monkeypatch, importlib.metadata.EntryPoint(
        name="test_plugin_half", value="slime_def_test_plugin_half:half", group=ENTRY_POINT_GROUP))
    make_defense("none")
    entry = DEFENSES.entries["test_plugin_half"]

    assert entry.family == "plug-in"
    assert entry.summary == "Scale vectors by one half."
    assert entry.defaults() == {"factor": 0.5}


def test_broken_entry_point_is_logged_and_skipped(monkeypatch, caplog):
    fake_entry_points(monkeypatch, importlib.metadata.EntryPoint(
        name="test_plugin_missing", value="slime_def_no_such_module:factory", group=ENTRY_POINT_GROUP))

    with caplog.at_level(logging.WARNING, logger="slime_def.defenses.base"):
        defense = make_defense("none")

    assert defense.spec == "none"
    assert "test_plugin_missing" not in DEFENSES
    assert "could not load defense plug-in slime_def_no_such_module:factory" in caplog.text


def test_cli_table_lists_every_defense():
    result = CliRunner().invoke(defenses_command, [])

    assert result.exit_code == 0, result.output
    for name in DEFENSES.entries:
        assert f"\n{name} " in f"\n{result.output}"
    assert "example: gaussian_dp(epsilon=1000.0, delta=1e-05)" in result.output


def test_cli_json_records():
    result = CliRunner().invoke(defenses_command, ["--format", "json", "--family", "dp"])
    records = {record["name"]: record for record in json.loads(result.output)}
    epsilon = records["gaussian_dp"]["parameters"][0]

    assert result.exit_code == 0, result.output
    assert set(records) == {"gaussian_dp", "dchi", "purkayastha"}
    assert epsilon == {
        "name": "epsilon",
        "default": None,
        "required": True,
        "unit": "privacy loss bound per vector (natural log of the likelihood ratio)",
    }
    assert records["gaussian_dp"]["randomness"] == "apply"


def test_cli_json_gives_defaults():
    result = CliRunner().invoke(defenses_command, ["--format", "json"])
    records = {record["name"]: record for record in json.loads(result.output)}
    sigma = records["gaussian"]["parameters"][0]

    assert sigma["default"] == 0.02
    assert records["gaussian"]["identity"] == {"sigma": 0.0}


def test_cli_unknown_family_is_a_usage_error():
    result = CliRunner().invoke(defenses_command, ["--family", "magic"])

    assert result.exit_code == 2
    assert "no defense in family 'magic'" in result.output
