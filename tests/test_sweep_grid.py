import pytest
from click.testing import CliRunner

from slime_def.cli import main
from slime_def.evaluate.grid import (
    ConfigError,
    config_from_options,
    expand_grid,
    load_config,
    parse_grid_option,
    parse_seeds,
)


def test_grid_option_parses_numbers():
    assert parse_grid_option("sigma=0.01,0.02, 0.05") == ("sigma", [0.01, 0.02, 0.05])


def test_grid_option_keeps_bare_words_as_strings():
    assert parse_grid_option("ranges=global,per_dim") == ("ranges", ["global", "per_dim"])


def test_seeds_list_and_range():
    assert parse_seeds("0,1,2") == (0, 1, 2)
    assert parse_seeds("0-3,7") == (0, 1, 2, 3, 7)
    assert parse_seeds("2,2,1") == (2, 1)


def test_grids_give_cartesian_product():
    grid = expand_grid("quantize", [("bits", [8, 4]), ("ranges", ["global", "per_dim"])])
    assert grid.specs() == [
        "quantize(bits=8, ranges='global')",
        "quantize(bits=8, ranges='per_dim')",
        "quantize(bits=4, ranges='global')",
        "quantize(bits=4, ranges='per_dim')",
    ]


def test_fixed_parameters_stay_in_spec():
    grid = expand_grid("gaussian_dp(delta=1e-5)", [("epsilon", [100, 1000])])
    assert grid.specs() == ["gaussian_dp(delta=1e-05, epsilon=100)", "gaussian_dp(delta=1e-05, epsilon=1000)"]


def test_chain_without_grid_is_one_setting():
    assert expand_grid("quantize(bits=4)|pca(dim=16)").specs() == ["quantize(bits=4)|pca(dim=16)"]


def test_points_are_product_of_specs_threats_seeds():
    config = config_from_options(["gaussian"], ["sigma=0.01,0.02"], "0,1", ["clean-pairs", "defended-pairs"])
    points = config.points()
    assert len(points) == 8
    assert len(set(points)) == 8
    assert points[0] == ("gaussian(sigma=0.01)", "clean-pairs", 0)


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (lambda: parse_grid_option("sigma"), ["invalid grid 'sigma'", "PARAM=V1,V2"]),
        (lambda: parse_grid_option("sigma="), ["empty grid for 'sigma'", "sigma=0.01,0.02"]),
        (lambda: parse_grid_option("sigma=0.1,,0.2"), ["empty value", "single commas"]),
        (lambda: parse_seeds("0,x"), ["invalid seed 'x'", "0,1,2"]),
        (lambda: parse_seeds("-1"), ["invalid seed '-1'"]),
        (lambda: parse_seeds("3-1"), ["invalid seed '3-1'"]),
        (lambda: expand_grid("gausian", [("sigma", [0.1])]), ["unknown defense 'gausian'", "gaussian"]),
        (lambda: expand_grid("gaussian", [("sigmaa", [0.1])]), ["unknown parameter 'sigmaa'", "valid: sigma"]),
        (lambda: expand_grid("gaussian", [("sigma", ["abc"])]), ["gaussian(sigma='abc')", "sigma must be a number"]),
        (lambda: expand_grid("gaussian", [("sigma", [-1.0])]), ["gaussian(sigma=-1.0)", "sigma must be in"]),
        (lambda: expand_grid("gaussian", [("sigma", [])]), ["empty grid for 'sigma'"]),
        (lambda: expand_grid("gaussian(sigma=0.1)", [("sigma", [0.2])]), ["both fixed", "remove one"]),
        (lambda: expand_grid("quantize|pca", [("dim", [8])]), ["is a chain"]),
        (lambda: config_from_options([], [], "0", ["clean-pairs"]), ["no defense given", "--defense"]),
        (lambda: config_from_options(["none"], [], "0", ["oops"]), ["unknown threat 'oops'", "clean-pairs"]),
    ],
)
def test_bad_sweep_values_raise(call, fragments):
    with pytest.raises(ConfigError) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


GOOD_TOML = """
dataset = "data/set"
seeds = [0, 1]
threats = ["clean-pairs", "defended-pairs"]
retriever = "knn(neighbours=5)"
aligner = "lstsq"
align_pairs = 100
k = 3
auxiliary_fraction = 0.6
workers = 1
out = "runs/store.jsonl"

[[defense]]
spec = "gaussian"
grid = { sigma = [0.01, 0.1] }

[[defense]]
spec = "quantize(bits=4)|pca(dim=16)"
"""


def test_config_file_parses(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(GOOD_TOML)
    config = load_config(path)
    assert config.specs() == ["gaussian(sigma=0.01)", "gaussian(sigma=0.1)", "quantize(bits=4)|pca(dim=16)"]
    assert config.seeds == (0, 1)
    assert config.threats == ("clean-pairs", "defended-pairs")
    assert config.dataset == str(tmp_path / "data/set")
    assert config.out == str(tmp_path / "runs/store.jsonl")
    assert (config.retriever, config.aligner, config.align_pairs, config.k) == ("knn(neighbours=5)", "lstsq", 100, 3)
    assert config.auxiliary_fraction == 0.6
    assert len(config.points()) == 12


def test_config_default_dataset_is_not_a_path(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('dataset = "default"\n[[defense]]\nspec = "none"\n')
    assert load_config(path).dataset == "default"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("seeds = [0,\n", ["invalid TOML", "examples/sweep.toml"]),
        ('seeds = [0]\n', ["no [[defense]] table"]),
        ('colour = 1\n[[defense]]\nspec = "none"\n', ["unknown key 'colour'", "valid keys"]),
        ('[[defense]]\ngrid = { sigma = [0.1] }\n', ["missing spec"]),
        ('[[defense]]\nspec = "nope"\n', ["[[defense]] number 1", "unknown defense 'nope'"]),
        ('[[defense]]\nspec = "gaussian"\ngrid = { sigmaa = [0.1] }\n', ["unknown parameter 'sigmaa'"]),
        ('[[defense]]\nspec = "gaussian"\ngrid = { sigma = ["x"] }\n', ["sigma must be a number"]),
        ('[[defense]]\nspec = "gaussian"\ngrid = { sigma = [] }\n', ["empty grid for 'sigma'"]),
        ('seeds = [0, -1]\n[[defense]]\nspec = "none"\n', ["invalid seed -1"]),
        ('seeds = "0,1"\n[[defense]]\nspec = "none"\n', ["invalid seeds '0,1'", "[0, 1, 2]"]),
        ('seeds = []\n[[defense]]\nspec = "none"\n', ["empty seed list"]),
        ('k = 0\n[[defense]]\nspec = "none"\n', ["invalid k 0", "positive integer"]),
        ('auxiliary_fraction = 1.5\n[[defense]]\nspec = "none"\n', ["invalid auxiliary_fraction 1.5"]),
        ('threats = ["both"]\n[[defense]]\nspec = "none"\n', ["unknown threat 'both'"]),
        ('[[defense]]\nspec = "none"\nsigma = 1\n', ["unknown key 'sigma'", "spec, grid"]),
    ],
)
def test_bad_config_raises(tmp_path, text, fragments):
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert str(path) in message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_missing_config_raises(tmp_path):
    with pytest.raises(ConfigError, match="not found; check the path given to --config"):
        load_config(tmp_path / "absent.toml")


def _one_line_error(result, *fragments):
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--defense", "gausian"], ["unknown defense 'gausian'"]),
        (["--defense", "gaussian", "--grid", "sigmaa=0.1"], ["unknown parameter 'sigmaa'", "valid:"]),
        (["--defense", "gaussian", "--grid", "sigma=abc"], ["sigma must be a number"]),
        (["--defense", "gaussian", "--grid", "sigma="], ["empty grid for 'sigma'"]),
        (["--defense", "gaussian", "--seeds", "1,two"], ["invalid seed 'two'"]),
        (["--config", "absent.toml"], ["absent.toml not found"]),
    ],
)
def test_cli_sweep_errors_are_one_line(tmp_path, args, fragments):
    result = CliRunner().invoke(main, ["sweep", *args, "--out", str(tmp_path / "s.jsonl")])
    _one_line_error(result, *fragments)


def test_cli_invalid_toml_is_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[[defense]\n")
    result = CliRunner().invoke(main, ["sweep", "--config", str(path), "--out", str(tmp_path / "s.jsonl")])
    _one_line_error(result, "invalid TOML", str(path))
