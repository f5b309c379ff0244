"""The on-disk dataset format: save and load round trips, fingerprints and validation errors."""

import json

import numpy as np
import pytest

from slime_def.data.dataset import (
    EMBEDDINGS,
    ITEMS,
    MANIFEST,
    EmbeddingDataset,
    fingerprint,
    load_dataset_dir,
    read_jsonl,
    save_dataset,
)
from slime_def.errors import DatasetError, SlimeDefError

N_ITEMS = 6


def make_dataset(**overrides):
    """Build a small valid dataset; keyword arguments replace ids, spaces, items or manifest."""
    rng = np.random.default_rng(7)
    fields = {
        "ids": [f"img{i}" for i in range(N_ITEMS)],
        "spaces": {
            "victim/clip": rng.standard_normal((N_ITEMS, 8)).astype(np.float32),
            "attacker/siglip": rng.standard_normal((N_ITEMS, 5)).astype(np.float32),
        },
        "items": [
            {
                "caption": f"a photo of thing {i}",
                "tags": ["thing", "red" if i % 2 else "blue"],
                "category": "objects",
                "source": f"camera/{i}",
                "width": 100 + i,
            }
            for i in range(N_ITEMS)
        ],
        "manifest": {"name": "tiny", "licence": "CC0-1.0"},
    }
    fields.update(overrides)
    return EmbeddingDataset(**fields)


def with_value(space_name, row, column, value, dtype=np.float32):
    """Return the spaces of make_dataset() with one entry replaced."""
    spaces = {name: matrix.astype(dtype) for name, matrix in make_dataset().spaces.items()}
    spaces[space_name][row, column] = value
    return spaces


# Round trips


def test_round_trip_ids(tmp_path):
    original = make_dataset()
    loaded = load_dataset_dir(save_dataset(original, tmp_path / "set"))
    assert loaded.ids == original.ids


def test_round_trip_arrays_bitwise(tmp_path):
    original = make_dataset()
    loaded = load_dataset_dir(save_dataset(original, tmp_path / "set"))
    assert loaded.space_names == original.space_names
    for name in original.space_names:
        assert loaded.space(name).dtype == np.float32
        assert loaded.space(name).tobytes() == original.space(name).tobytes()


def test_round_trip_items(tmp_path):
    original = make_dataset()
    original.items[1]["caption"] = "ünïcödé caption ✓"
    original.items[2]["extra"] = {"nested": [1, 2.5, None]}
    loaded = load_dataset_dir(save_dataset(original, tmp_path / "set"))
    assert loaded.items == original.items


def test_round_trip_fingerprint(tmp_path):
    original = make_dataset()
    loaded = load_dataset_dir(save_dataset(original, tmp_path / "set"))
    assert loaded.fingerprint == original.fingerprint


def test_round_trip_manifest_fields(tmp_path):
    original = make_dataset()
    save_dataset(original, tmp_path / "set")
    manifest = json.loads((tmp_path / "set" / MANIFEST).read_text())
    assert manifest["format"] == "slime-def-dataset"
    assert manifest["format_version"] == 1
    assert manifest["n_items"] == N_ITEMS
    assert manifest["fingerprint"] == original.fingerprint
    assert manifest["licence"] == "CC0-1.0"
    assert manifest["spaces"]["victim/clip"]["dim"] == 8
    assert manifest["spaces"]["attacker/siglip"]["dim"] == 5


def test_resave_keeps_fingerprint(tmp_path):
    first = load_dataset_dir(save_dataset(make_dataset(), tmp_path / "first"))
    second = load_dataset_dir(save_dataset(first, tmp_path / "second"))
    first_manifest = json.loads((tmp_path / "first" / MANIFEST).read_text())
    second_manifest = json.loads((tmp_path / "second" / MANIFEST).read_text())
    assert second.fingerprint == first.fingerprint
    assert second_manifest["fingerprint"] == first_manifest["fingerprint"]


def test_save_overwrite_requires_flag(tmp_path):
    save_dataset(make_dataset(), tmp_path / "set")
    with pytest.raises(DatasetError, match="already exists.*overwrite=True"):
        save_dataset(make_dataset(), tmp_path / "set")


def test_save_overwrite_replaces(tmp_path):
    save_dataset(make_dataset(), tmp_path / "set")
    smaller = make_dataset().subset([0, 1, 2])
    save_dataset(smaller, tmp_path / "set", overwrite=True)
    assert load_dataset_dir(tmp_path / "set").ids == ["img0", "img1", "img2"]


def test_save_onto_file_rejected(tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a directory")
    with pytest.raises(DatasetError, match="not a directory"):
        save_dataset(make_dataset(), target)


def test_wider_floats_stored_as_float32():
    spaces = {name: matrix.astype(np.float64) for name, matrix in make_dataset().spaces.items()}
    spaces["victim/clip"] = spaces["victim/clip"].astype(np.float16)
    dataset = make_dataset(spaces=spaces)
    assert dataset.space("victim/clip").dtype == np.float32
    assert dataset.space("attacker/siglip").dtype == np.float32


def test_missing_item_fields_default():
    dataset = make_dataset(items=[{} for _ in range(N_ITEMS)])
    assert dataset.items[0] == {"caption": "", "tags": [], "category": "", "source": ""}


def test_tags_string_split():
    items = [{"tags": " red , car|toy; "} for _ in range(N_ITEMS)]
    assert make_dataset(items=items).tags[0] == ["red", "car", "toy"]


def test_subset_order():
    subset = make_dataset().subset([4, 1])
    assert subset.ids == ["img4", "img1"]
    assert subset.captions == ["a photo of thing 4", "a photo of thing 1"]


# Fingerprints


def change_float(dataset):
    matrix = dataset.spaces["victim/clip"]
    matrix[3, 2] = np.nextafter(matrix[3, 2], np.float32(np.inf))


def change_id(dataset):
    dataset.ids[4] = "img4b"


def change_tag(dataset):
    dataset.items[0]["tags"][1] = "green"


def change_caption(dataset):
    dataset.items[5]["caption"] += "."


@pytest.mark.parametrize("change", [change_float, change_id, change_tag, change_caption])
def test_fingerprint_detects_change(change):
    dataset = make_dataset()
    before = fingerprint(dataset)
    change(dataset)
    assert fingerprint(dataset) != before


def test_fingerprint_ignores_manifest():
    named = make_dataset(manifest={"name": "other name"})
    assert named.fingerprint == make_dataset().fingerprint


def test_fingerprint_format():
    assert make_dataset().fingerprint.startswith("sha256:")
    assert len(make_dataset().fingerprint) == len("sha256:") + 64


# Validation errors in memory


def test_error_is_user_facing():
    assert issubclass(DatasetError, SlimeDefError)


def test_rows_mismatch_between_spaces():
    spaces = make_dataset().spaces
    spaces["attacker/siglip"] = spaces["attacker/siglip"][:4]
    with pytest.raises(DatasetError, match="'attacker/siglip' has 4 rows but there are 6 ids"):
        make_dataset(spaces=spaces)


def test_items_count_mismatch():
    with pytest.raises(DatasetError, match="5 metadata items for 6 ids"):
        make_dataset(items=[{} for _ in range(N_ITEMS - 1)])


def test_duplicate_ids():
    ids = ["a", "b", "c", "b", "e", "f"]
    with pytest.raises(DatasetError, match="duplicate id 'b' at rows 1 and 3"):
        make_dataset(ids=ids)


def test_empty_id():
    with pytest.raises(DatasetError, match="item 2 has an empty id"):
        make_dataset(ids=["a", "b", "", "d", "e", "f"])


def test_null_id():
    with pytest.raises(DatasetError, match="item 1 has a null id"):
        make_dataset(ids=["a", None, "c", "d", "e", "f"])


def test_list_id():
    with pytest.raises(DatasetError, match="id of item 0 is a list"):
        make_dataset(ids=[["a"], "b", "c", "d", "e", "f"])


def test_bytes_ids_decoded():
    assert make_dataset(ids=[f"i{n}".encode() for n in range(N_ITEMS)]).ids[0] == "i0"


def test_nan_value():
    with pytest.raises(DatasetError, match="'victim/clip' row 2 contains NaN or Inf"):
        make_dataset(spaces=with_value("victim/clip", 2, 0, np.nan))


def test_inf_value():
    with pytest.raises(DatasetError, match="'attacker/siglip' row 4 contains NaN or Inf"):
        make_dataset(spaces=with_value("attacker/siglip", 4, 1, -np.inf))


def test_all_zero_row():
    spaces = make_dataset().spaces
    spaces["victim/clip"][3] = 0.0
    with pytest.raises(DatasetError, match="'victim/clip' row 3 is all zeros"):
        make_dataset(spaces=spaces)


def test_float64_overflow():
    spaces = with_value("victim/clip", 1, 1, 1e300, dtype=np.float64)
    with pytest.raises(DatasetError, match="row 1 has values beyond the float32 range"):
        make_dataset(spaces=spaces)


def test_float64_underflow():
    spaces = {name: matrix.astype(np.float64) for name, matrix in make_dataset().spaces.items()}
    spaces["victim/clip"][2] = 1e-300
    with pytest.raises(DatasetError, match="row 2 becomes all zeros in float32"):
        make_dataset(spaces=spaces)


@pytest.mark.parametrize(
    "matrix, dtype_name",
    [
        (np.ones((N_ITEMS, 4), dtype=np.int64), "int64"),
        (np.full((N_ITEMS, 4), "0.5"), "<U3"),
        (np.full((N_ITEMS, 4), 0.5, dtype=object), "object"),
        (np.ones((N_ITEMS, 4), dtype=bool), "bool"),
    ],
    ids=["int", "string", "object", "bool"],
)
def test_wrong_dtype(matrix, dtype_name):
    spaces = dict(make_dataset().spaces, **{"victim/clip": matrix})
    with pytest.raises(DatasetError, match=f"'victim/clip' has dtype {dtype_name}; expected float"):
        make_dataset(spaces=spaces)


@pytest.mark.parametrize("shape", [(N_ITEMS,), (N_ITEMS, 2, 3)])
def test_wrong_rank(shape):
    spaces = dict(make_dataset().spaces, **{"victim/clip": np.ones(shape, dtype=np.float32)})
    with pytest.raises(DatasetError, match=r"has shape \(6,.*expected a 2-D \(N, d\) matrix"):
        make_dataset(spaces=spaces)


def test_zero_dimensions():
    spaces = dict(make_dataset().spaces, **{"victim/clip": np.ones((N_ITEMS, 0), dtype=np.float32)})
    with pytest.raises(DatasetError, match="0 dimensions"):
        make_dataset(spaces=spaces)


def test_ragged_space():
    rows = [[1.0, 2.0]] * (N_ITEMS - 1) + [[1.0]]
    with pytest.raises(DatasetError, match="'victim/clip' is not a rectangular array"):
        make_dataset(spaces={"victim/clip": rows})


def test_invalid_space_name():
    spaces = {"victim clip": make_dataset().spaces["victim/clip"]}
    with pytest.raises(DatasetError, match="invalid space name 'victim clip'"):
        make_dataset(spaces=spaces)


def test_no_spaces():
    with pytest.raises(DatasetError, match="no embedding space"):
        make_dataset(spaces={})


def test_no_items():
    with pytest.raises(DatasetError, match="no items"):
        make_dataset(ids=[], spaces={"victim/clip": np.ones((0, 3), np.float32)}, items=[])


def test_unknown_space_lists_available():
    with pytest.raises(DatasetError, match="'nope' not found; available spaces: attacker/siglip, victim/clip"):
        make_dataset().space("nope")


@pytest.mark.parametrize("tags", [5, {"red": 1}, ["red", 3]])
def test_tags_not_string_list(tags):
    items = [{"tags": ["ok"]} for _ in range(N_ITEMS)]
    items[3]["tags"] = tags
    with pytest.raises(DatasetError, match=r"item 3 \(id 'img3'\): field 'tags' must be a list of strings"):
        make_dataset(items=items)


def test_caption_not_string():
    items = [{} for _ in range(N_ITEMS)]
    items[0]["caption"] = ["two", "parts"]
    with pytest.raises(DatasetError, match="item 0 .*field 'caption' must be a string"):
        make_dataset(items=items)


def test_item_not_object():
    items = [{} for _ in range(N_ITEMS)]
    items[1] = "caption only"
    with pytest.raises(DatasetError, match="item 1 .*metadata is str, expected a JSON object"):
        make_dataset(items=items)


def test_item_id_contradicts_row():
    items = [{} for _ in range(N_ITEMS)]
    items[2]["id"] = "img5"
    with pytest.raises(DatasetError, match="field 'id' is 'img5' but the row's id is 'img2'"):
        make_dataset(items=items)


def test_item_value_not_json():
    items = [{} for _ in range(N_ITEMS)]
    items[4]["score"] = np.float32(0.5)
    with pytest.raises(DatasetError, match="item 4 .*field 'score' contains a float32"):
        make_dataset(items=items)


# Reading a dataset directory


@pytest.fixture
def saved(tmp_path):
    return save_dataset(make_dataset(), tmp_path / "set")


def edit_manifest(directory, **fields):
    path = directory / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(fields)
    path.write_text(json.dumps(manifest))


def test_edited_items_fail_fingerprint(saved):
    items = saved / ITEMS
    items.write_text(items.read_text().replace("a photo of thing 3", "a photo of thing 30"))
    with pytest.raises(DatasetError, match="does not match the manifest fingerprint.*re-save"):
        load_dataset_dir(saved)


def test_edited_items_load_unverified(saved):
    items = saved / ITEMS
    items.write_text(items.read_text().replace("a photo of thing 3", "a photo of thing 30"))
    assert load_dataset_dir(saved, verify=False).captions[3] == "a photo of thing 30"


def test_missing_manifest(tmp_path):
    with pytest.raises(DatasetError, match="no manifest.json; not a slime-def dataset directory"):
        load_dataset_dir(tmp_path)


def test_manifest_invalid_json(saved):
    (saved / MANIFEST).write_text("{not json")
    with pytest.raises(DatasetError, match="manifest.json: invalid JSON"):
        load_dataset_dir(saved)


def test_manifest_not_object(saved):
    (saved / MANIFEST).write_text("[1, 2]")
    with pytest.raises(DatasetError, match="manifest.json: expected a JSON object, got list"):
        load_dataset_dir(saved)


def test_manifest_wrong_format(saved):
    edit_manifest(saved, format="something-else")
    with pytest.raises(DatasetError, match="field 'format' is 'something-else'"):
        load_dataset_dir(saved)


def test_manifest_newer_version(saved):
    edit_manifest(saved, format_version=2)
    with pytest.raises(DatasetError, match="format_version 2 is not supported.*upgrade slime-def"):
        load_dataset_dir(saved)


def test_manifest_files_not_object(saved):
    edit_manifest(saved, files="embeddings.safetensors")
    with pytest.raises(DatasetError, match="field 'files' is str, expected an object"):
        load_dataset_dir(saved)


def test_manifest_file_outside_directory(saved):
    edit_manifest(saved, files={"embeddings": EMBEDDINGS, "items": "../items.jsonl"})
    with pytest.raises(DatasetError, match="'files.items' is '../items.jsonl'; expected a file name inside"):
        load_dataset_dir(saved)


def test_manifest_spaces_not_object(saved):
    edit_manifest(saved, spaces=["victim/clip"])
    with pytest.raises(DatasetError, match="manifest field 'spaces' is list"):
        load_dataset_dir(saved)


def test_empty_embeddings_file(saved):
    (saved / EMBEDDINGS).write_bytes(b"")
    with pytest.raises(DatasetError, match="embeddings.safetensors: not a readable safetensors file"):
        load_dataset_dir(saved)


def test_missing_embeddings_file(saved):
    (saved / EMBEDDINGS).unlink()
    with pytest.raises(DatasetError, match="embeddings.safetensors: file not found"):
        load_dataset_dir(saved)


def test_empty_items_file(saved):
    (saved / ITEMS).write_bytes(b"")
    with pytest.raises(DatasetError, match="items.jsonl: the file is empty"):
        load_dataset_dir(saved)


def test_items_line_without_id(saved):
    lines = (saved / ITEMS).read_text().splitlines()
    lines[1] = json.dumps({"caption": "no id here"})
    (saved / ITEMS).write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="items.jsonl:2: missing field 'id'"):
        load_dataset_dir(saved)


def test_items_line_removed(saved):
    lines = (saved / ITEMS).read_text().splitlines()
    (saved / ITEMS).write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DatasetError, match="has 6 rows but there are 5 ids"):
        load_dataset_dir(saved)


# JSONL


def test_jsonl_reads_objects(tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": "b", "tags": ["x"]}\n')
    assert read_jsonl(path) == [{"id": "a"}, {"id": "b", "tags": ["x"]}]


def test_jsonl_byte_order_mark(tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_bytes('{"id": "a"}\n'.encode("utf-8-sig"))
    assert read_jsonl(path) == [{"id": "a"}]


def test_jsonl_invalid_line_3(tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": c}\n{"id": "d"}\n')
    with pytest.raises(DatasetError, match=r"meta.jsonl:3: invalid JSON"):
        read_jsonl(path)


def test_jsonl_line_not_object(tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_text('{"id": "a"}\n["b"]\n')
    with pytest.raises(DatasetError, match="meta.jsonl:2: expected a JSON object, got list"):
        read_jsonl(path)


def test_jsonl_not_utf8(tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "\xff"}\n')
    with pytest.raises(DatasetError, match="meta.jsonl:2: not valid UTF-8"):
        read_jsonl(path)


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_jsonl_empty(tmp_path, content):
    path = tmp_path / "meta.jsonl"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match="meta.jsonl: the file is empty"):
        read_jsonl(path)


def test_jsonl_missing(tmp_path):
    with pytest.raises(DatasetError, match="nope.jsonl: file not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_jsonl_directory(tmp_path):
    with pytest.raises(DatasetError, match="is a directory; pass a JSONL file"):
        read_jsonl(tmp_path)
