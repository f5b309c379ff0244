"""The dataset builder: record readers, real builds, resume, and the shipped default."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from slime_def.data.build import (CROSS_MACHINE_TOLERANCE, DEFAULT_DATASET_DIR, compare_datasets,
                                  read_records)
from slime_def.errors import DatasetError

STAMPS = Path("/usr/share/tuxpaint/stamps")
WORDNET = Path("/usr/share/wordnet")
# A handful of stamps: photographs and drawings, PNG and SVG, from several folders.
SAMPLE_IDS = [
    "animals/mammals/equines/zebra",
    "animals/birds/ostrich",
    "food/fruit/banana",
    "household/tools/hammer",
    "vehicles/ship/cartoon/tugboat",
]
SMALL_ENCODERS = {"victim/mobilenet_v2": "mobilenet_v2", "text/minilm": "minilm"}


# ------------------------------------------------------------------ readers


def test_read_csv_records(tmp_path):
    (tmp_path / "captions.csv").write_text(
        "file,caption,tags,category,photographer\n"
        "cats/tom.jpg,A grey cat.,cat|grey,animals,Ann\n"
        "dog.png,A dog.,,,\n"
    )
    records = read_records(tmp_path / "captions.csv")
    assert [record.id for record in records] == ["cats/tom", "dog"]
    assert records[0].file == str(tmp_path / "cats/tom.jpg")
    assert records[0].tags == ["cat", "grey"]
    assert records[0].extra == {"photographer": "Ann"}
    assert records[1].tags is None


def test_read_jsonl_records(tmp_path):
    lines = [{"id": "a", "image": "a.png", "caption": "An apple.", "tags": ["apple"]},
             {"file": "b.png", "caption": "A box."}]
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    records = read_records(tmp_path / "captions.jsonl", image_root=tmp_path / "images")
    assert [record.id for record in records] == ["a", "b"]
    assert records[0].file == str(tmp_path / "images" / "a.png")
    assert records[0].tags == ["apple"]


def test_read_coco_records(tmp_path):
    coco = {
        "images": [{"id": 7, "file_name": "000007.jpg"}, {"id": 9, "file_name": "000009.jpg"}],
        "annotations": [
            {"id": 12, "image_id": 7, "caption": "A second caption."},
            {"id": 3, "image_id": 7, "caption": "A man riding a horse."},
        ],
    }
    (tmp_path / "captions.json").write_text(json.dumps(coco))
    records = read_records(tmp_path / "captions.json")
    assert len(records) == 1
    assert records[0].id == "7"
    assert records[0].caption == "A man riding a horse."
    assert records[0].extra["captions"] == ["A man riding a horse.", "A second caption."]


def test_read_records_missing_caption_names_line(tmp_path):
    (tmp_path / "captions.csv").write_text("file,title\ncat.jpg,Cat\n")
    with pytest.raises(DatasetError, match=r"captions.csv:2: missing field 'caption'"):
        read_records(tmp_path / "captions.csv")


def test_read_records_unknown_format(tmp_path):
    (tmp_path / "captions.txt").write_text("cat.jpg A cat\n")
    with pytest.raises(DatasetError, match="unknown captions format .txt"):
        read_records(tmp_path / "captions.txt")


# ---------------------------------------------------------------- CLI layer


def test_cli_build_rejects_bad_encoder_option(tmp_path):
    from slime_def.cli import main

    (tmp_path / "captions.csv").write_text("file,caption\na.png,A.\n")
    result = CliRunner().invoke(
        main, ["data", "build", str(tmp_path), str(tmp_path / "captions.csv"), "--out", str(tmp_path / "out"),
               "--encoder", "mobilenet_v2"],
    )
    assert result.exit_code == 2
    assert "is not SPACE=SPEC" in result.output


def _tiny_dataset(offset=0.0):
    from slime_def.data.dataset import EmbeddingDataset

    vectors = np.asarray([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    vectors[1] += np.float32(offset)
    items = [{"caption": "A cat.", "tags": ["cat"], "category": "animals", "source": "cat.png"},
             {"caption": "A dog.", "tags": ["dog"], "category": "animals", "source": "dog.png"}]
    return EmbeddingDataset(ids=["cat", "dog"], spaces={"victim/toy": vectors}, items=items)


@pytest.fixture
def existing_dataset(tmp_path):
    from slime_def.data.dataset import save_dataset

    return save_dataset(_tiny_dataset(), tmp_path / "existing")


@pytest.fixture
def no_model_loading(monkeypatch):
    from slime_def.data.encoders import ENCODERS

    def fail(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(ENCODERS, "create", fail)


def test_build_rejects_existing_dataset_early(existing_dataset, no_model_loading):
    from slime_def.data.build import build_dataset

    records = [{"id": "a", "file": "a.png", "caption": "A.", "tags": []}]
    with pytest.raises(DatasetError, match=r"already exists there; pass overwrite=True"):
        build_dataset(records, existing_dataset, encoders=SMALL_ENCODERS, progress=False)
    assert not (existing_dataset / ".work").exists()


def test_cli_build_rejects_existing_dataset_early(tmp_path, existing_dataset, no_model_loading):
    from slime_def.cli import main

    (tmp_path / "captions.csv").write_text("file,caption\na.png,A.\n")
    for command in (["build", str(tmp_path), str(tmp_path / "captions.csv")], ["build-default"]):
        result = CliRunner().invoke(main, ["data", *command, "--out", str(existing_dataset)])
        assert result.exit_code == 1, result.output
        assert "pass --overwrite to replace it" in result.output
        assert "overwrite=True" not in result.output
        assert not (existing_dataset / ".work").exists()


def test_compare_datasets_accepts_paths(tmp_path, existing_dataset):
    from slime_def.data.dataset import save_dataset

    other = save_dataset(_tiny_dataset(offset=1e-3), tmp_path / "other")
    for a, b in ((existing_dataset, other), (str(existing_dataset), _tiny_dataset(offset=1e-3))):
        comparison = compare_datasets(a, b)
        assert comparison["shared"] == 2
        assert comparison["items_equal"]
        assert comparison["max_abs_diff"]["victim/toy"] == pytest.approx(1e-3, rel=1e-3)


def test_cli_report_counts_singular(tmp_path, capsys):
    from types import SimpleNamespace

    from slime_def.cli.data_build import _report
    from slime_def.data.images import SkippedFile

    dataset = _tiny_dataset()
    dataset.ids, dataset.items = dataset.ids[:1], dataset.items[:1]
    dataset.spaces = {"victim/toy": dataset.spaces["victim/toy"][:1]}
    result = SimpleNamespace(dataset=dataset, path=tmp_path, skipped=[SkippedFile("x.png", "decoding failed")],
                             batches_embedded=0, batches_reused=1)
    _report(result)
    output = capsys.readouterr().out
    assert "reused 1 of 1 batch from the work folder" in output
    assert f"wrote 1 item to {tmp_path}" in output
    assert "skipped 1 file:" in output


def test_cli_help_has_examples():
    from slime_def.cli import main

    for command in ("build", "build-default"):
        result = CliRunner().invoke(main, ["data", command, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.output
        assert "[default: 32" in result.output


# ---------------------------------------------------------- shipped default


def test_default_loads_without_torch():
    if not (DEFAULT_DATASET_DIR / "manifest.json").is_file():
        pytest.skip("the default dataset has not been built in this checkout")
    script = (
        "import sys\n"
        "from slime_def.data.dataset import load_dataset_dir\n"
        "from slime_def.data.build import DEFAULT_DATASET_DIR\n"
        "d = load_dataset_dir(DEFAULT_DATASET_DIR)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(len(d), sorted(d.spaces))\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "['attacker/efficientnet_lite0', 'text/minilm', 'victim/mobilenet_v2']" in output


def test_default_manifest_contents():
    from slime_def.data.dataset import load_dataset_dir

    if not (DEFAULT_DATASET_DIR / "manifest.json").is_file():
        pytest.skip("the default dataset has not been built in this checkout")
    dataset = load_dataset_dir(DEFAULT_DATASET_DIR)
    manifest = dataset.manifest

    assert len(dataset) > 600
    assert {name: info["dim"] for name, info in manifest["spaces"].items()} == {
        "victim/mobilenet_v2": 1280, "attacker/efficientnet_lite0": 1280, "text/minilm": 384}
    for name, matrix in dataset.spaces.items():
        assert manifest["spaces"][name]["normalization"] == "l2"
        np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert all(entry["reason"] for entry in manifest["skipped"])
    assert manifest["provenance"]["python_packages"]["torch"].startswith("2.")
    assert all(item["caption"] and item["tags"] for item in dataset.items)
    assert (DEFAULT_DATASET_DIR / "LICENSE").is_file()
    assert (DEFAULT_DATASET_DIR / "PROVENANCE.md").is_file()


# -------------------------------------------------------- real-model builds


def _require_build_inputs():
    if not STAMPS.is_dir():
        pytest.skip("Tux Paint stamps not found; install the Debian package tuxpaint-stamps-default")
    if not (WORDNET / "index.sense").is_file():
        pytest.skip("WordNet not found; install the Debian packages wordnet-base and wordnet-sense-index")
    pytest.importorskip("torch")


def _sample_records(ids=SAMPLE_IDS):
    from slime_def.data.stamps import collect_stamps

    records, _ = collect_stamps(STAMPS)
    chosen = [record for record in records if record["id"] in set(ids)]
    assert len(chosen) == len(ids)
    return chosen


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    _require_build_inputs()
    from slime_def.data.tags import Tagger

    return Tagger(source=WORDNET, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def broken_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("broken")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (folder / "entity.svg").write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/hostname">]>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><text>&x;</text></svg>\n'
    )
    return [
        {"id": "zz/corrupt", "file": str(folder / "corrupt.png"), "caption": "A broken file.", "source": "corrupt.png"},
        {"id": "zz/entity", "file": str(folder / "entity.svg"), "caption": "An unsafe file.", "source": "entity.svg"},
    ]


@pytest.fixture(scope="module")
def full_build(tmp_path_factory, tagger, broken_files):
    from slime_def.data.build import build_dataset

    out = tmp_path_factory.mktemp("full") / "dataset"
    records = _sample_records() + broken_files
    return build_dataset(records, out, encoders=SMALL_ENCODERS, batch_size=2, tagger=tagger, progress=False)


@pytest.mark.build
def test_build_handful_of_stamps(full_build):
    dataset = full_build.dataset
    assert dataset.ids == sorted(SAMPLE_IDS)
    assert dataset.spaces["victim/mobilenet_v2"].shape == (5, 1280)
    assert dataset.spaces["text/minilm"].shape == (5, 384)
    for matrix in dataset.spaces.values():
        np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-6)
    zebra = dataset.items[dataset.ids.index("animals/mammals/equines/zebra")]
    assert zebra["caption"] == "A zebra."
    assert zebra["tags"][0] == "zebra"
    assert zebra["category"] == "animals/mammals/equines"
    assert zebra["source"] == "animals/mammals/equines/zebra.png"
    assert not (full_build.path / ".work").exists()


@pytest.mark.build
def test_build_reports_undecodable_files(full_build):
    reasons = {entry["path"]: entry["reason"] for entry in full_build.dataset.manifest["skipped"]}
    assert set(reasons) == {"corrupt.png", "entity.svg"}
    assert reasons["corrupt.png"].startswith("decoding failed")
    assert "EntitiesForbidden" in reasons["entity.svg"]
    assert len(full_build.skipped) == 2


@pytest.mark.build
def test_build_resume_matches_uninterrupted(tmp_path, tagger, broken_files, full_build):
    from slime_def.data.build import build_dataset

    class Interrupted(Exception):
        pass

    def stop_after_first(index, total):
        raise Interrupted

    records = _sample_records() + broken_files
    out = tmp_path / "dataset"
    with pytest.raises(Interrupted):
        build_dataset(records, out, encoders=SMALL_ENCODERS, batch_size=2, tagger=tagger,
                      progress=False, on_batch=stop_after_first)
    assert (out / ".work" / "batch-00000.npz").is_file()
    assert not (out / "manifest.json").exists()

    resumed = build_dataset(records, out, encoders=SMALL_ENCODERS, batch_size=2, tagger=tagger, progress=False)

    assert resumed.batches_embedded == 3  # 7 records in batches of 2, one already done
    assert resumed.batches_reused == 1
    assert resumed.dataset.fingerprint == full_build.dataset.fingerprint
    assert resumed.dataset.manifest["skipped"] == full_build.dataset.manifest["skipped"]


@pytest.mark.build
def test_build_rejects_work_dir_of_other_build(tmp_path, tagger):
    from slime_def.data.build import build_dataset
    from slime_def.errors import SlimeDefError

    records = _sample_records(SAMPLE_IDS[:1])
    work = tmp_path / "work"
    build_dataset(records, tmp_path / "a", encoders=SMALL_ENCODERS, tagger=tagger, progress=False,
                  work_dir=work, keep_work_dir=True)
    with pytest.raises(SlimeDefError, match=r"contains batches of a build .* \(differs in: batch_size\)") as error:
        build_dataset(records, tmp_path / "b", encoders=SMALL_ENCODERS, batch_size=7, tagger=tagger,
                      progress=False, work_dir=work)
    assert "--restart" in str(error.value)

    restarted = build_dataset(records, tmp_path / "b", encoders=SMALL_ENCODERS, batch_size=7, tagger=tagger,
                              progress=False, work_dir=work, restart=True)
    assert restarted.batches_embedded == 1
    assert restarted.batches_reused == 0
    assert not work.exists()


@pytest.mark.build
def test_failed_build_leaves_no_work_dir(tmp_path, tagger):
    from slime_def.data.build import build_dataset
    from slime_def.errors import SlimeDefError

    records = _sample_records(SAMPLE_IDS[:1])
    out = tmp_path / "dataset"
    with pytest.raises(SlimeDefError, match="no_such_encoder"):
        build_dataset(records, out, encoders={"victim/x": "no_such_encoder"}, tagger=tagger, progress=False)
    assert not out.exists()

    result = build_dataset(records, out, encoders=SMALL_ENCODERS, tagger=tagger, progress=False)
    assert result.batches_embedded == 1


@pytest.mark.build
def test_shipped_default_matches_fresh_build(tmp_path, tagger):
    from slime_def.data.build import DEFAULT_ENCODERS, build_dataset
    from slime_def.data.dataset import load_dataset_dir

    if not (DEFAULT_DATASET_DIR / "manifest.json").is_file():
        pytest.skip("the default dataset has not been built in this checkout")
    shipped = load_dataset_dir(DEFAULT_DATASET_DIR)
    assert set(SAMPLE_IDS) <= set(shipped.ids)

    fresh = build_dataset(_sample_records(), tmp_path / "fresh", encoders=DEFAULT_ENCODERS,
                          tagger=tagger, progress=False).dataset
    comparison = compare_datasets(fresh, shipped)

    assert comparison["shared"] == len(SAMPLE_IDS)
    assert comparison["items_equal"]
    for space, difference in comparison["max_abs_diff"].items():
        assert difference <= CROSS_MACHINE_TOLERANCE, space
