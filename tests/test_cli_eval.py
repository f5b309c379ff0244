import json

import numpy as np
import pytest
from click.testing import CliRunner

from slime_def.cli import main
from slime_def.data.dataset import save_dataset


@pytest.fixture(scope="module")
def dataset_dir(synthetic, tmp_path_factory):
    return str(save_dataset(synthetic, tmp_path_factory.mktemp("data") / "synthetic"))


def _run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _run_eval(dataset_dir, *args):
    return _run("eval", "--dataset", dataset_dir, "--align-pairs", "100", *args)


def _assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


def test_eval_prints_table(dataset_dir):
    result = _run_eval(dataset_dir, "--defense", "none")
    assert result.exit_code == 0, result.output
    assert "tag micro F1@5" in result.output
    assert "floor" in result.output
    assert "ceiling" in result.output
    assert "150 targets" in result.output


def test_eval_json_output_is_record(dataset_dir):
    result = _run_eval(dataset_dir, "--format", "json", "--seed", "3")
    record = json.loads(result.output)
    assert record["seed"] == 3
    assert record["defense"] == "none"


def test_eval_writes_record_and_refuses_overwrite(dataset_dir, tmp_path):
    out = tmp_path / "run.json"
    assert _run_eval(dataset_dir, "--out", str(out)).exit_code == 0
    record = json.loads(out.read_text())
    assert record["dataset"]["source"] == dataset_dir
    before = out.read_text()
    result = _run_eval(dataset_dir, "--out", str(out))
    _assert_one_line_error(result, "already exists", "--force")
    assert out.read_text() == before
    assert _run_eval(dataset_dir, "--out", str(out), "--force", "--seed", "1").exit_code == 0
    assert json.loads(out.read_text())["seed"] == 1


def test_eval_leaves_no_temporary_files(dataset_dir, tmp_path):
    _run_eval(dataset_dir, "--out", str(tmp_path / "run.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("--defense", "gausian"), ("unknown defense 'gausian'", "Known:")),
        (("--defense", "none(sigma=1)"), ("unknown parameter 'sigma'",)),
        (("--defense", "none("), ("invalid spec",)),
        (("--retriever", "bm25"), ("unknown retriever 'bm25'", "knn, mlp")),
        (("--aligner", "cca"), ("unknown aligner 'cca'", "lstsq, procrustes, ridge")),
        (("--threat", "adaptive-ish"), ("clean-pairs", "defended-pairs")),
        (("--align-pairs", "0"), ("--align-pairs",)),
        (("--align-pairs", "399"), ("--align-pairs) <= 388",)),
        (("--k", "0"), ("--k",)),
        (("--attacker-space", "attacker/clip"), ("'attacker/clip' not found", "attacker/synthetic")),
    ],
)
def test_eval_bad_input_gives_one_line_error(dataset_dir, args, fragments):
    _assert_one_line_error(_run_eval(dataset_dir, *args), *fragments)


def test_eval_missing_dataset_path(tmp_path):
    result = _run("eval", "--dataset", str(tmp_path / "nope"))
    _assert_one_line_error(result, "not found")


def test_eval_dataset_without_attacker_space(synthetic, tmp_path):
    path = tmp_path / "victim_only.npz"
    np.savez(path, **{"victim/x": synthetic.space("victim/synthetic")})
    result = _run("eval", "--dataset", str(path), "--align-pairs", "100")
    _assert_one_line_error(result, "no 'attacker/...' space")


def test_eval_writes_predictions_per_target(dataset_dir, tmp_path):
    path = tmp_path / "recovered.jsonl"
    result = _run_eval(dataset_dir, "--predictions", str(path), "--k", "3")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 150
    assert set(rows[0]) == {"id", "caption", "true_tags", "recovered_tags"}
    assert len(rows[0]["recovered_tags"]) == 3
    scores = [score for _, score in rows[0]["recovered_tags"]]
    assert scores == sorted(scores, reverse=True)


def test_eval_table_shows_examples(dataset_dir):
    result = _run_eval(dataset_dir, "--examples", "2")
    assert "true:" in result.output
    assert result.output.count("recovered:") == 2


def test_eval_out_in_missing_folder(dataset_dir, tmp_path):
    result = _run_eval(dataset_dir, "--out", str(tmp_path / "nope" / "run.json"))
    _assert_one_line_error(result, "does not exist")


def test_eval_notes_non_unit_inputs(synthetic, tmp_path):
    path = tmp_path / "scaled.npz"
    np.savez(path, **{name: 60.0 * m for name, m in synthetic.spaces.items()}, ids=np.array(synthetic.ids))
    metadata = tmp_path / "items.jsonl"
    metadata.write_text("".join(json.dumps({"id": i, **item}) + "\n" for i, item in zip(synthetic.ids, synthetic.items)))
    result = _run("eval", "--dataset", str(path), "--metadata", str(metadata), "--align-pairs", "100")
    assert result.exit_code == 0, result.output
    assert "not unit-norm (median norm 60)" in result.output


def test_eval_record_file_is_readable_by_group(dataset_dir, tmp_path):
    import os
    import stat

    out = tmp_path / "run.json"
    _run_eval(dataset_dir, "--out", str(out))
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
