"""`slime-def data info` and `slime-def data import`, run through Click's test runner."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from slime_def.cli import main
from slime_def.data.dataset import ITEMS, EmbeddingDataset, load_dataset_dir, save_dataset

IDS = ["cat", "dog", "owl", "fox", "elk"]


def victim():
    return np.random.default_rng(3).standard_normal((5, 6)).astype(np.float32)


def attacker():
    return np.random.default_rng(4).standard_normal((5, 4)).astype(np.float32)


def invoke(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def error_lines(result):
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def assert_clean_error(result, exit_codes=(1,)):
    """Check that a command failed with exactly one `Error:` line and no traceback."""
    assert result.exit_code in exit_codes, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert len(error_lines(result)) == 1, result.output
    assert "Traceback" not in result.output


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture
def metadata(tmp_path):
    records = [
        {"id": "fox", "caption": "a fox", "tags": ["wild", "red"], "category": "mammal"},
        {"id": "cat", "caption": "a cat", "tags": ["pet"], "category": "mammal"},
        {"id": "owl", "caption": "an owl", "tags": ["wild", "bird"], "category": "bird"},
        {"id": "dog", "caption": "a dog", "tags": ["pet"], "category": "mammal"},
        {"id": "elk", "caption": "", "tags": []},
    ]
    return write_jsonl(tmp_path / "meta.jsonl", records)


@pytest.fixture
def npz(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/clip": victim(), "attacker/siglip": attacker()}, ids=np.array(IDS))
    return path


@pytest.fixture
def saved(tmp_path):
    dataset = EmbeddingDataset(
        ids=IDS,
        spaces={"victim/clip": victim(), "attacker/siglip": attacker()},
        items=[{"caption": f"a {name}", "tags": ["animal", name]} for name in IDS],
        manifest={"name": "zoo", "licence": "CC0-1.0"},
    )
    return save_dataset(dataset, tmp_path / "zoo")


@pytest.fixture
def npy_files(tmp_path):
    np.save(tmp_path / "victim.npy", victim())
    np.save(tmp_path / "attacker.npy", attacker())
    return tmp_path / "victim.npy", tmp_path / "attacker.npy"


def line(pattern, output):
    """Return whether a whole output line matches ``pattern``."""
    return re.search(rf"^{pattern}$", output, flags=re.MULTILINE) is not None


# data info


def test_info_folder_exit_code(saved):
    assert invoke("data", "info", saved).exit_code == 0


def test_info_folder_items(saved):
    assert line(r"items\s+5", invoke("data", "info", saved).output)


def test_info_folder_spaces(saved):
    output = invoke("data", "info", saved).output
    assert line(r"\s+victim/clip\s+6-d\s+normalisation=none\s+model=unknown", output)
    assert line(r"\s+attacker/siglip\s+4-d\s+normalisation=none\s+model=unknown", output)


def test_info_folder_captions_tags(saved):
    output = invoke("data", "info", saved).output
    assert line(r"captions\s+5 of 5 items", output)
    assert line(r"tags\s+5 items tagged, 6 distinct tags, 2.0 per tagged item", output)
    assert "animal (5)" in output


def test_info_folder_name_licence(saved):
    output = invoke("data", "info", saved).output
    assert line(r"dataset\s+zoo", output)
    assert line(r"licence\s+CC0-1.0", output)


def test_info_npz_metadata(npz, metadata):
    result = invoke("data", "info", npz, "--metadata", metadata)
    assert result.exit_code == 0, result.output
    assert line(r"items\s+5", result.output)
    assert line(r"\s+victim/clip\s+6-d.*", result.output)
    assert line(r"\s+attacker/siglip\s+4-d.*", result.output)
    assert line(r"captions\s+4 of 5 items", result.output)
    assert line(r"tags\s+4 items tagged, 4 distinct tags, 1.5 per tagged item", result.output)
    assert line(r"categories\s+2", result.output)
    assert line(r"example\s+id='cat' caption='a cat' tags=\['pet'\]", result.output)


def test_info_npz_without_metadata(npz):
    result = invoke("data", "info", npz)
    assert result.exit_code == 0, result.output
    assert line(r"captions\s+0 of 5 items", result.output)


def test_info_json(saved):
    result = invoke("data", "info", saved, "--format", "json")
    summary = json.loads(result.output)
    assert summary["n_items"] == 5
    assert summary["spaces"] == {"attacker/siglip": 4, "victim/clip": 6}
    assert summary["fingerprint"] == load_dataset_dir(saved).fingerprint


def bad_npz(tmp_path, value):
    matrix = victim()
    matrix[2, 1] = value
    path = tmp_path / "bad.npz"
    np.savez(path, **{"victim/clip": matrix})
    return path


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda tmp, npz, meta: [tmp / "nope.npz"], "nope.npz: not found"),
        (lambda tmp, npz, meta: [tmp / "empty.npz"], "empty.npz: the file is empty"),
        (lambda tmp, npz, meta: [tmp / "emb.csv"], "unsupported file type '.csv'"),
        (lambda tmp, npz, meta: [bad_npz(tmp, np.nan)], "row 2 contains NaN or Inf"),
        (lambda tmp, npz, meta: [tmp], "no manifest.json"),
        (lambda tmp, npz, meta: [npz, "--metadata", tmp / "broken.jsonl"], "broken.jsonl:3: invalid JSON"),
        (lambda tmp, npz, meta: [npz, "--metadata", tmp / "empty.jsonl"], "empty.jsonl: the file is empty"),
        (lambda tmp, npz, meta: [npz, "--metadata", tmp / "short.jsonl"], "no metadata for 1 of 5 ids"),
    ],
    ids=["missing", "empty-npz", "suffix", "nan", "no-manifest", "json-line-3", "empty-jsonl", "id-missing"],
)
def test_info_bad_input(tmp_path, npz, metadata, make_args, message):
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "emb.csv").write_text("id\ncat\n")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "broken.jsonl").write_text('{"id": "cat"}\n{"id": "dog"}\n{"id": owl}\n')
    write_jsonl(tmp_path / "short.jsonl", [{"id": name} for name in IDS[:4]])
    result = invoke("data", "info", *make_args(tmp_path, npz, metadata))
    assert_clean_error(result)
    assert message in error_lines(result)[0]


def test_info_edited_folder(saved):
    items = saved / ITEMS
    items.write_text(items.read_text().replace("a owl", "a barn owl"))
    result = invoke("data", "info", saved)
    assert_clean_error(result)
    assert "does not match the manifest fingerprint" in result.output


def test_info_metadata_directory(npz, tmp_path):
    result = invoke("data", "info", npz, "--metadata", tmp_path)
    assert_clean_error(result, exit_codes=(2,))
    assert "is a directory" in result.output


# data import


def test_import_writes_folder(tmp_path, npy_files, metadata):
    victim_file, attacker_file = npy_files
    out = tmp_path / "imported"
    result = invoke(
        "data", "import", out,
        "--space", f"victim/clip={victim_file}",
        "--space", f"attacker/siglip={attacker_file}",
        "--metadata", metadata,
    )
    assert result.exit_code == 0, result.output
    assert "wrote 5 items with spaces attacker/siglip, victim/clip" in result.output
    dataset = load_dataset_dir(out)
    assert dataset.space_names == ["attacker/siglip", "victim/clip"]
    assert dataset.space("victim/clip").tobytes() == victim().tobytes()
    assert dataset.space("attacker/siglip").tobytes() == attacker().tobytes()


def test_import_metadata_in_line_order(tmp_path, npy_files, metadata):
    out = tmp_path / "imported"
    invoke("data", "import", out, "--space", f"victim/clip={npy_files[0]}", "--metadata", metadata)
    dataset = load_dataset_dir(out)
    assert dataset.ids == ["fox", "cat", "owl", "dog", "elk"]
    assert dataset.captions[2] == "an owl"


def test_import_manifest_fields(tmp_path, npy_files):
    out = tmp_path / "imported"
    invoke("data", "import", out, "--space", f"victim/clip={npy_files[0]}", "--name", "mine", "--licence", "MIT")
    manifest = load_dataset_dir(out).manifest
    assert manifest["name"] == "mine"
    assert manifest["licence"] == "MIT"
    assert manifest["provenance"]["imported_from"]["victim/clip"] == str(npy_files[0].resolve())


def test_import_refuses_overwrite(tmp_path, npy_files):
    out = tmp_path / "imported"
    invoke("data", "import", out, "--space", f"victim/clip={npy_files[0]}")
    result = invoke("data", "import", out, "--space", f"attacker/siglip={npy_files[1]}")
    assert_clean_error(result)
    assert "already exists there; pass --force" in result.output
    assert load_dataset_dir(out).space_names == ["victim/clip"]


def test_import_force_replaces(tmp_path, npy_files):
    out = tmp_path / "imported"
    invoke("data", "import", out, "--space", f"victim/clip={npy_files[0]}")
    result = invoke("data", "import", out, "--space", f"attacker/siglip={npy_files[1]}", "--force")
    assert result.exit_code == 0, result.output
    assert load_dataset_dir(out).space_names == ["attacker/siglip"]


def test_import_space_twice(tmp_path, npy_files):
    result = invoke(
        "data", "import", tmp_path / "out",
        "--space", f"victim/clip={npy_files[0]}",
        "--space", f"victim/clip={npy_files[1]}",
    )
    assert_clean_error(result, exit_codes=(2,))
    assert "space 'victim/clip' is given twice" in result.output
    assert not (tmp_path / "out").exists()


def test_import_space_without_file(tmp_path):
    result = invoke("data", "import", tmp_path / "out", "--space", "victim/clip")
    assert_clean_error(result, exit_codes=(2,))
    assert "expected NAME=FILE" in result.output


def test_import_space_required(tmp_path):
    result = invoke("data", "import", tmp_path / "out")
    assert_clean_error(result, exit_codes=(2,))
    assert "--space" in error_lines(result)[0]


def test_import_rows_mismatch(tmp_path, npy_files):
    np.save(tmp_path / "short.npy", attacker()[:3])
    result = invoke(
        "data", "import", tmp_path / "out",
        "--space", f"victim/clip={npy_files[0]}",
        "--space", f"attacker/siglip={tmp_path / 'short.npy'}",
    )
    assert_clean_error(result)
    assert "different numbers of rows (victim/clip: 5, attacker/siglip: 3)" in result.output


def test_import_empty_npy(tmp_path):
    (tmp_path / "victim.npy").write_bytes(b"")
    result = invoke("data", "import", tmp_path / "out", "--space", f"victim/clip={tmp_path / 'victim.npy'}")
    assert_clean_error(result)
    assert "victim.npy: the file is empty" in result.output


def test_import_missing_file(tmp_path):
    result = invoke("data", "import", tmp_path / "out", "--space", f"victim/clip={tmp_path / 'nope.npy'}")
    assert_clean_error(result)
    assert "nope.npy: file not found" in result.output


def test_import_bad_metadata_tags(tmp_path, npy_files):
    records = [{"id": name, "tags": "ok"} for name in IDS]
    records[1]["tags"] = {"not": "a list"}
    path = write_jsonl(tmp_path / "meta.jsonl", records)
    result = invoke("data", "import", tmp_path / "out", "--space", f"victim/clip={npy_files[0]}", "--metadata", path)
    assert_clean_error(result)
    assert "meta.jsonl:2: field 'tags' must be a list of strings" in result.output


def test_import_invalid_space_name(tmp_path, npy_files):
    result = invoke("data", "import", tmp_path / "out", "--space", f"victim clip={npy_files[0]}")
    assert_clean_error(result)
    assert "invalid space name 'victim clip'" in result.output


def test_import_warns_without_roles_or_tags(tmp_path):
    import numpy as np
    from click.testing import CliRunner

    from slime_def.cli import main

    matrix = tmp_path / "clip.npy"
    np.save(matrix, np.random.default_rng(0).standard_normal((5, 4)))
    result = CliRunner().invoke(main, ["data", "import", str(tmp_path / "out"), "--space", f"clip={matrix}"])
    assert result.exit_code == 0, result.output
    assert "no 'victim/...' space" in result.output
    assert "no 'attacker/...' space" in result.output
    assert "no item has tags" in result.output
