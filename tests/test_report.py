import json

import pytest
from click.testing import CliRunner

from slime_def.cli import main
from slime_def.evaluate.report import budget_answer
from slime_def.evaluate.summary import summarise

FINGERPRINT = "sha256:" + "ab" * 32

# (spec, expected cosine, bytes per vector, per-seed (utility, normalised leakage))
SETTINGS = [
    ("gaussian(sigma=0.02)", 0.98, 384, [(0.90, 0.95), (0.92, 0.97), (0.88, 0.99)]),
    ("gaussian(sigma=0.1)", 0.71, 384, [(0.60, 0.70), (0.62, 0.72), (0.58, 0.68)]),
    ("quantize(bits=8)", None, 96, [(0.99, 0.96), (0.99, 0.96), (0.99, 0.96)]),
    ("quantize(bits=2)", None, 24, [(0.82, 0.90), (0.80, 0.92), (0.84, 0.88)]),
]


def _record(spec, cosine, size, seed, utility, leakage):
    return {
        "defense": spec, "threat": "clean-pairs", "seed": seed, "retriever": "knn(neighbours=10)",
        "aligner": "ridge(l2=0.1)", "align_pairs": 100, "k": 5, "auxiliary_fraction": 0.5,
        "dataset": {"fingerprint": FINGERPRINT, "name": "synthetic", "victim_space": "victim/s",
                    "attacker_space": "attacker/s"},
        "defense_properties": {"expected_cosine": cosine, "empirical_cosine": cosine, "output_dim": 96,
                               "bytes_per_vector": size},
        "leakage": {"tag_micro_f1@5": {"score": 0.2 + 0.4 * leakage, "floor": 0.2, "ceiling": 0.6,
                                       "normalised": leakage, "random": 0.1, "baseline": 0.2}},
        "utility": {"knn_overlap@5": {"score": utility, "clean": 1.0},
                    "category_precision@5": {"score": 0.5, "clean": 0.5}},
        "versions": {"python": "3.11.7", "jax": "0.10.2"},
        "created": f"2026-01-0{seed + 1}T00:00:00+00:00",
    }


def _records():
    return [
        _record(spec, cosine, size, seed, utility, leakage)
        for spec, cosine, size, values in SETTINGS
        for seed, (utility, leakage) in enumerate(values)
    ]


@pytest.fixture()
def store(tmp_path):
    path = tmp_path / "store.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in _records()))
    return path


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_report_has_table_rows_and_budget(store, tmp_path):
    out = tmp_path / "report.md"
    result = _run("report", str(store), "--out", str(out), "--min-utility", "0.8")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "| gaussian(sigma=0.02) | 3 | 0.970 ± 0.020 | 0.588 ± 0.008 | 0.900 ± 0.020 | 0.500 ± 0.000 | 0.980 |" in text
    assert "| quantize(bits=2) | 3 | 0.900 ± 0.020 |" in text
    assert "| 24 |" in text
    assert "Least leakage with mean knn_overlap@5 >= 0.8: quantize(bits=2)" in text
    assert "Least leakage with mean knn_overlap@5 >= 0.8: quantize(bits=2)" in result.output
    assert "![Leakage against utility, one curve per defense](report.png)" in text
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")


def test_report_lists_frontier_and_provenance(store, tmp_path):
    out = tmp_path / "report.md"
    assert _run("report", str(store), "--out", str(out)).exit_code == 0
    text = out.read_text()
    frontier = text.split("### Pareto frontier")[1].split("###")[0]
    assert "1. quantize(bits=8): knn_overlap@5 0.990, leakage 0.960" in frontier
    assert "2. quantize(bits=2): knn_overlap@5 0.820, leakage 0.900" in frontier
    assert "3. gaussian(sigma=0.1): knn_overlap@5 0.600, leakage 0.700" in frontier
    assert "gaussian(sigma=0.02)" not in frontier
    assert f"| dataset fingerprint | {FINGERPRINT} |" in text
    assert "| seeds | 0, 1, 2 |" in text
    assert "| jax | 0.10.2 |" in text


def test_report_states_when_no_setting_meets_budget(store, tmp_path):
    out = tmp_path / "report.md"
    result = _run("report", str(store), "--out", str(out), "--min-utility", "0.995")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "No setting meets the budget knn_overlap@5 >= 0.995." in text
    assert "The highest mean knn_overlap@5 is 0.990 (quantize(bits=8))" in text


def test_budget_tie_goes_to_higher_utility():
    records = _records()
    for record in records:
        if record["defense"] == "quantize(bits=2)":
            record["leakage"]["tag_micro_f1@5"]["normalised"] = 0.7
    (summary,) = summarise(records)
    assert summary.best_within_budget(0.5).spec == "quantize(bits=2)"
    assert "quantize(bits=2)" in budget_answer(summary, 0.5)


def test_html_report_beside_markdown(store, tmp_path):
    out, html_out = tmp_path / "report.md", tmp_path / "report.html"
    result = _run("report", str(store), "--out", str(out), "--html", str(html_out), "--figure-format", "svg")
    assert result.exit_code == 0, result.output
    page = html_out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<td>gaussian(sigma=0.02)</td><td>3</td><td>0.970 ± 0.020</td>" in page
    assert '<img src="report.svg"' in page
    assert "Least leakage with mean knn_overlap@5 &gt;= 0.8: quantize(bits=2)" in page
    assert (tmp_path / "report.svg").exists()


def test_html_by_extension(store, tmp_path):
    out = tmp_path / "summary.html"
    assert _run("report", str(store), "--out", str(out)).exit_code == 0
    assert "<table>" in out.read_text()
    assert (tmp_path / "summary.png").exists()


def test_report_unknown_extension_is_error(store, tmp_path):
    result = _run("report", str(store), "--out", str(tmp_path / "report.txt"))
    assert result.exit_code != 0
    assert "unsupported report format '.txt'" in result.output


def test_report_refuses_overwrite_without_force(store, tmp_path):
    out = tmp_path / "report.md"
    assert _run("report", str(store), "--out", str(out)).exit_code == 0
    again = _run("report", str(store), "--out", str(out))
    assert again.exit_code != 0
    assert "already exists" in again.output
    assert _run("report", str(store), "--out", str(out), "--force").exit_code == 0


def test_report_separates_datasets(store, tmp_path):
    other = [dict(r, dataset=dict(r["dataset"], fingerprint="sha256:" + "cd" * 32)) for r in _records()]
    with open(store, "a") as handle:
        handle.write("".join(json.dumps(record) + "\n" for record in other))
    out = tmp_path / "report.md"
    assert _run("report", str(store), "--out", str(out)).exit_code == 0
    text = out.read_text()
    assert text.count("### Settings") == 2
    assert "records of 2 different datasets" in text


def test_raw_report_swaps_leakage_columns(store, tmp_path):
    out = tmp_path / "report.md"
    assert _run("report", str(store), "--out", str(out), "--raw").exit_code == 0
    text = out.read_text()
    assert "tag_micro_f1@5 (raw) | tag_micro_f1@5 (normalised)" in text
    assert "| gaussian(sigma=0.02) | 3 | 0.588 ± 0.008 | 0.970 ± 0.020 |" in text


def _undefined_store(tmp_path, threats=("clean-pairs", "defended-pairs")):
    records = []
    for threat in threats:
        for record in _records():
            record["threat"] = threat
            entry = record["leakage"]["tag_micro_f1@5"]
            entry.update(ceiling=0.2, normalised=None, low_headroom=True)
            records.append(record)
    path = tmp_path / "undefined.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_undefined_leakage_explained_in_report(tmp_path, caplog):
    store = _undefined_store(tmp_path)
    out = tmp_path / "report.md"
    result = _run("report", str(store), "--out", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "lower the budget" not in text
    assert "ceiling does not exceed its floor" in text
    assert "--raw" in text
    assert "(no points: normalised leakage is undefined" in text
    assert "Low headroom" in text
    assert not (tmp_path / "report.png").exists()
    assert "report.png" not in text


def test_undefined_warning_once_per_panel(tmp_path, caplog):
    records = [json.loads(line) for line in _undefined_store(tmp_path).read_text().splitlines()]
    with caplog.at_level("WARNING", logger="slime_def.evaluate.summary"):
        summarise(records)
    warnings = [m for m in caplog.messages if "undefined" in m]
    assert len(warnings) == 2
    assert "clean-pairs" in warnings[0]
    assert "all 12 runs" in warnings[0]


def test_budget_lists_runners_up_within_one_std():
    records = _records()
    for record in records:
        if record["defense"] == "gaussian(sigma=0.02)":
            record["leakage"]["tag_micro_f1@5"]["normalised"] -= 0.06
    summary = summarise(records)[0]
    answer = budget_answer(summary, 0.8)
    assert "Least leakage with mean knn_overlap@5 >= 0.8: quantize(bits=2)" in answer
    assert "Within one standard deviation of its leakage: gaussian(sigma=0.02)" in answer


def test_min_utility_outside_range_warns(store, tmp_path):
    result = _run("report", str(store), "--out", str(tmp_path / "r.md"), "--min-utility", "80")
    assert result.exit_code == 0, result.output
    assert "--min-utility 80 is outside [0, 1]" in result.output


def test_missing_seeds_are_listed(tmp_path):
    records = [r for r in _records() if not (r["defense"] == "gaussian(sigma=0.1)" and r["seed"] == 2)]
    store = tmp_path / "partial.jsonl"
    store.write_text("".join(json.dumps(record) + "\n" for record in records))
    out = tmp_path / "report.md"
    assert _run("report", str(store), "--out", str(out)).exit_code == 0
    assert "Settings with fewer than 3 seeds" in out.read_text()
    assert "gaussian(sigma=0.1) (seeds 0, 1)" in out.read_text()
