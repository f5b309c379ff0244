import json
import logging
import math

import numpy as np
import pytest
from click.testing import CliRunner

from slime_def.cli import main
from slime_def.data.dataset import save_dataset
from slime_def.evaluate.frontier import pareto_mask
from slime_def.evaluate.grid import config_from_options
from slime_def.evaluate.plot import FRONTIER_LABEL, PlotError, figure_format, plot_summaries
from slime_def.evaluate.summary import MetricChoice, interval, load_summaries
from slime_def.evaluate.sweep import run_sweep

MAGIC = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}


@pytest.fixture(scope="module")
def store(synthetic, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plot")
    dataset_dir = str(save_dataset(synthetic, folder / "synthetic"))
    path = folder / "store.jsonl"
    for defense, grid in (("gaussian", "sigma=0.02,0.1,0.3"), ("quantize", "bits=1,8")):
        config = config_from_options([defense], [grid], "0,1,2", ["clean-pairs"], dataset=dataset_dir,
                                     align_pairs=100)
        run_sweep(config, path, dataset=synthetic, workers=1, progress=False)
    return path


def _expected_means(path, leakage_field="normalised"):
    """Mean over seeds per defense, computed straight from the JSONL lines."""
    values = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        leak = record["leakage"]["tag_micro_f1@5"][leakage_field]
        util = record["utility"]["knn_overlap@5"]["score"]
        values.setdefault(record["defense"], []).append((util, leak))
    return {spec: tuple(np.mean(np.array(pairs), axis=0)) for spec, pairs in values.items()}


def _lines_by_label(figure):
    ax = figure.axes[0]
    return {line.get_label(): line for line in ax.get_lines()}


def _run(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("extension", [".png", ".svg", ".pdf"])
def test_plot_writes_figure_with_store_means(store, tmp_path, extension):
    out = tmp_path / f"figure{extension}"
    result = _run("plot", str(store), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(MAGIC[extension])

    _, summaries = load_summaries(store)
    figure = plot_summaries(summaries)
    lines = _lines_by_label(figure)
    means = _expected_means(store)

    for label, prefix in (("gaussian, varying sigma", "gaussian("), ("quantize, varying bits", "quantize(")):
        expected = sorted((u, l) for spec, (u, l) in means.items() if spec.startswith(prefix))
        np.testing.assert_allclose(lines[label].get_xdata(), [u for u, _ in expected], rtol=1e-12)
        np.testing.assert_allclose(lines[label].get_ydata(), [l for _, l in expected], rtol=1e-12)

    specs = list(means)
    utility = np.array([means[s][0] for s in specs])
    leakage = np.array([means[s][1] for s in specs])
    on_front = pareto_mask(utility, leakage)
    front = sorted(zip(utility[on_front], leakage[on_front]), key=lambda p: (-p[0], p[1]))
    np.testing.assert_allclose(lines[FRONTIER_LABEL].get_xdata(), [u for u, _ in front], rtol=1e-12)
    np.testing.assert_allclose(lines[FRONTIER_LABEL].get_ydata(), [l for _, l in front], rtol=1e-12)


def test_normalised_plot_has_floor_zero_and_ceiling_one(store):
    _, summaries = load_summaries(store)
    ax = plot_summaries(summaries).axes[0]
    floor = [line for line in ax.get_lines() if line.get_gid() == "floor"][0]
    ceiling = [line for line in ax.get_lines() if line.get_gid() == "ceiling"][0]
    assert list(floor.get_ydata()) == [0.0, 0.0]
    assert list(ceiling.get_ydata()) == [1.0, 1.0]


def test_raw_plot_uses_scores_and_mean_bounds(store):
    _, summaries = load_summaries(store, MetricChoice(raw=True))
    ax = plot_summaries(summaries).axes[0]
    records = [json.loads(line) for line in store.read_text().splitlines()]
    floors = [r["leakage"]["tag_micro_f1@5"]["floor"] for r in records]
    floor = [line for line in ax.get_lines() if line.get_gid() == "floor"][0]
    assert floor.get_ydata()[0] == pytest.approx(np.mean(floors))
    means = _expected_means(store, "score")
    gaussian = sorted((u, l) for spec, (u, l) in means.items() if spec.startswith("gaussian("))
    line = _lines_by_label(ax.figure)["gaussian, varying sigma"]
    np.testing.assert_allclose(line.get_ydata(), [l for _, l in gaussian], rtol=1e-12)


def test_interval_is_t_based_from_three_seeds():
    result = interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)
    assert result.kind == "t95"
    assert (result.low, result.high) == (pytest.approx(2.0 - half), pytest.approx(2.0 + half))


def test_interval_is_min_max_below_three_seeds():
    result = interval([0.2, 0.6, None])
    assert result.kind == "min-max"
    assert (result.low, result.mean, result.high) == (0.2, pytest.approx(0.4), 0.6)
    assert interval([0.5]).std == 0.0


def test_datasets_are_kept_apart(store, tmp_path, caplog):
    mixed = tmp_path / "mixed.jsonl"
    lines = store.read_text().splitlines()
    other = []
    for line in lines:
        record = json.loads(line)
        record["dataset"]["fingerprint"] = "sha256:" + "f" * 64
        other.append(json.dumps(record))
    mixed.write_text("\n".join(lines + other) + "\n")
    with caplog.at_level(logging.WARNING, logger="slime_def.evaluate.summary"):
        _, summaries = load_summaries(mixed)
    assert any("2 datasets" in message for message in caplog.messages)
    assert len(summaries) == 2
    assert {s.comparison.fingerprint for s in summaries} == {json.loads(lines[0])["dataset"]["fingerprint"],
                                                             "sha256:" + "f" * 64}
    figure = plot_summaries(summaries)
    assert len([ax for ax in figure.axes if ax.get_visible()]) == 2
    only = _run("plot", str(mixed), "--out", str(tmp_path / "one.png"), "--dataset", "ffff")
    assert only.exit_code == 0, only.output
    assert "1 panel(s)" in only.output


def test_unknown_extension_is_one_line_error(store, tmp_path):
    result = _run("plot", str(store), "--out", str(tmp_path / "figure.jpg"))
    assert result.exit_code != 0
    assert "unsupported figure format '.jpg'" in result.output
    assert ".png, .svg, .pdf" in result.output
    with pytest.raises(PlotError):
        figure_format("figure")


def test_threat_filter_without_records_names_threats(store, tmp_path):
    result = _run("plot", str(store), "--out", str(tmp_path / "f.png"), "--threat", "defended-pairs")
    assert result.exit_code != 0
    assert "the store has threats clean-pairs" in result.output


def test_unknown_metric_lists_known(store, tmp_path):
    result = _run("plot", str(store), "--out", str(tmp_path / "f.png"), "--leakage", "bleu@K")
    assert result.exit_code != 0
    assert "unknown leakage metric 'bleu@5'" in result.output
    assert "tag_micro_f1@5" in result.output


def test_existing_figure_needs_force(store, tmp_path):
    out = tmp_path / "f.png"
    assert _run("plot", str(store), "--out", str(out)).exit_code == 0
    again = _run("plot", str(store), "--out", str(out))
    assert again.exit_code != 0
    assert "--force" in again.output
    assert _run("plot", str(store), "--out", str(out), "--force").exit_code == 0


def test_missing_store_is_error(tmp_path):
    result = _run("plot", str(tmp_path / "absent.jsonl"), "--out", str(tmp_path / "f.png"))
    assert result.exit_code != 0
    assert "not found" in result.output


def test_family_grouping_joins_defenses(store):
    _, summaries = load_summaries(store, group_by="family")
    labels = sorted(curve.label for curve in summaries[0].curves)
    assert labels == ["gaussian, varying sigma", "quantize, varying bits"]
    assert sorted(curve.group for curve in summaries[0].curves) == ["noise", "quantization"]


def test_undefined_leakage_plot_is_one_line_error(tmp_path):
    records = []
    for seed in range(3):
        for sigma in (0.02, 0.1):
            records.append({
                "defense": f"gaussian(sigma={sigma})", "threat": "clean-pairs", "seed": seed,
                "retriever": "knn(neighbours=10)", "aligner": "ridge(l2=0.1)", "align_pairs": 100, "k": 5,
                "auxiliary_fraction": 0.5,
                "dataset": {"fingerprint": "sha256:" + "cd" * 32, "name": "tiny"},
                "defense_properties": {},
                "leakage": {"tag_micro_f1@5": {"score": 0.2, "floor": 0.2, "ceiling": 0.2, "normalised": None,
                                               "low_headroom": True}},
                "utility": {"knn_overlap@5": {"score": 0.9}},
            })
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    out = tmp_path / "empty.png"
    result = _run("plot", str(path), "--out", str(out))
    assert result.exit_code != 0
    assert "ceiling does not exceed its floor" in result.output
    assert "--raw" in result.output
    assert not out.exists()
    raw = _run("plot", str(path), "--out", str(out), "--raw")
    assert raw.exit_code == 0, raw.output


def test_bands_clipped_to_unit_range(store):
    _, summaries = load_summaries(store, MetricChoice(raw=True))
    figure = plot_summaries(summaries)
    for ax in figure.axes:
        for collection in ax.collections:
            for path in collection.get_paths():
                vertices = path.vertices
                finite = vertices[np.isfinite(vertices).all(axis=1)]
                assert finite[:, 0].min() >= -1e-9
                assert finite[:, 0].max() <= 1 + 1e-9
                assert finite[:, 1].min() >= -1e-9
                assert finite[:, 1].max() <= 1 + 1e-9
