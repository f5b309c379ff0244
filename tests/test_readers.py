"""Readers for .npz, .safetensors, .parquet and .npy files, and JSONL metadata joined by id."""

import datetime
import json
import logging
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import save_file

from slime_def.data.dataset import save_dataset
from slime_def.data.readers import default_dataset_path, from_files, join_metadata, load_dataset
from slime_def.errors import DatasetError

IDS = ["cat", "dog", "owl", "fox"]


def victim():
    return np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)


def attacker():
    return np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture
def metadata(tmp_path):
    """Metadata in another order than IDS, plus one id that has no embedding."""
    records = [
        {"id": "owl", "caption": "an owl", "tags": ["bird", "night"], "category": "animal"},
        {"id": "unused", "caption": "no embedding for this one"},
        {"id": "cat", "caption": "a cat", "tags": ["pet"], "category": "animal", "source": "cam"},
        {"id": "fox", "caption": "a fox", "tags": []},
        {"id": "dog", "caption": "a dog", "tags": ["pet"], "rating": 4.5},
    ]
    return write_jsonl(tmp_path / "meta.jsonl", records)


@pytest.fixture
def npz_with_ids(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": victim(), "attacker/b": attacker()}, ids=np.array(IDS))
    return path


def write_bf16_safetensors(path):
    """Write a safetensors file holding one (2, 2) bfloat16 tensor of ones, a dtype NumPy lacks."""
    header = json.dumps({"victim/a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + np.full(4, 0x3F80, np.uint16).tobytes())
    return path


# .npz


def test_npz_with_ids(npz_with_ids):
    dataset = load_dataset(npz_with_ids)
    assert dataset.ids == IDS
    assert dataset.space("victim/a").tobytes() == victim().tobytes()
    assert dataset.space("attacker/b").tobytes() == attacker().tobytes()


def test_npz_without_ids(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": victim()})
    dataset = load_dataset(path)
    assert dataset.ids == ["0", "1", "2", "3"]
    assert dataset.captions == ["", "", "", ""]


def test_npz_bytes_ids(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": victim()}, ids=np.array([name.encode() for name in IDS]))
    assert load_dataset(path).ids == IDS


def test_npz_integer_ids(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": victim()}, ids=np.arange(10, 14))
    assert load_dataset(path).ids == ["10", "11", "12", "13"]


def test_npz_name_from_file(npz_with_ids):
    assert load_dataset(npz_with_ids).manifest["name"] == "emb"


def test_npz_object_ids(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": victim()}, ids=np.array(IDS, dtype=object))
    with pytest.raises(DatasetError, match="array 'ids' contains Python objects.*dtype str"):
        load_dataset(path)


def test_npz_ids_count(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": victim()}, ids=np.array(IDS[:3]))
    with pytest.raises(DatasetError, match="3 ids for 4 embedding rows"):
        load_dataset(path)


def test_npz_ids_2d(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": victim()}, ids=np.array([IDS]))
    with pytest.raises(DatasetError, match="'ids' has shape \\(1, 4\\); expected a 1-D array"):
        load_dataset(path)


def test_npz_duplicate_ids(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": victim()}, ids=np.array(["cat", "dog", "cat", "fox"]))
    with pytest.raises(DatasetError, match="emb.npz: duplicate id 'cat' at rows 0 and 2"):
        load_dataset(path)


def test_npz_rows_mismatch(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": victim(), "attacker/b": attacker()[:3]})
    with pytest.raises(DatasetError, match=r"different numbers of rows \(victim/a: 4, attacker/b: 3\)"):
        load_dataset(path)


@pytest.mark.parametrize(
    "value, message",
    [(np.nan, "row 1 contains NaN or Inf"), (np.inf, "row 1 contains NaN or Inf"), (None, "row 1 is all zeros")],
    ids=["nan", "inf", "zero-row"],
)
def test_npz_bad_values(tmp_path, value, message):
    matrix = victim()
    if value is None:
        matrix[1] = 0.0
    else:
        matrix[1, 4] = value
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": matrix})
    with pytest.raises(DatasetError, match=f"emb.npz: space 'victim/a' {message}"):
        load_dataset(path)


@pytest.mark.parametrize(
    "matrix, message",
    [
        (np.ones((4, 6), dtype=np.int32), "dtype int32; expected float"),
        (np.full((4, 6), "x"), "dtype <U1; expected float"),
        (np.ones(4, dtype=np.float32), r"shape \(4,\); expected a 2-D"),
        (np.ones((4, 2, 3), dtype=np.float32), r"shape \(4, 2, 3\); expected a 2-D"),
        (np.float32(1.0), r"shape \(\); expected a 2-D"),
    ],
    ids=["int", "string", "1-d", "3-d", "0-d"],
)
def test_npz_bad_arrays(tmp_path, matrix, message):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": matrix})
    with pytest.raises(DatasetError, match=f"space 'victim/a' has {message}"):
        load_dataset(path)


def test_npz_object_array(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": np.full((4, 6), 0.5, dtype=object)})
    with pytest.raises(DatasetError, match="array 'victim/a' contains Python objects"):
        load_dataset(path)


def test_npz_only_ids(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, ids=np.array(IDS))
    with pytest.raises(DatasetError, match="no 2-D embedding arrays found"):
        load_dataset(path)


def test_npz_holding_npy_data(tmp_path):
    path = tmp_path / "emb.npz"
    with open(path, "wb") as handle:
        np.save(handle, victim())
    with pytest.raises(DatasetError, match="emb.npz: not a .npz archive"):
        load_dataset(path)


# .safetensors


def test_safetensors_with_ids(tmp_path):
    path = tmp_path / "emb.safetensors"
    save_file({"victim/a": victim(), "attacker/b": attacker()}, path, metadata={"ids": json.dumps(IDS)})
    dataset = load_dataset(path)
    assert dataset.ids == IDS
    assert dataset.space("victim/a").tobytes() == victim().tobytes()
    assert dataset.space("attacker/b").tobytes() == attacker().tobytes()


def test_safetensors_without_ids(tmp_path):
    path = tmp_path / "emb.safetensors"
    save_file({"victim/a": victim()}, path)
    assert load_dataset(path).ids == ["0", "1", "2", "3"]


def test_safetensors_float16(tmp_path):
    path = tmp_path / "emb.safetensors"
    save_file({"victim/a": victim().astype(np.float16)}, path)
    assert load_dataset(path).space("victim/a").dtype == np.float32


@pytest.mark.parametrize("ids", ["not json", json.dumps({"a": 1}), json.dumps([["cat"], "dog", "owl", "fox"])])
def test_safetensors_bad_ids(tmp_path, ids):
    path = tmp_path / "emb.safetensors"
    save_file({"victim/a": victim()}, path, metadata={"ids": ids})
    with pytest.raises(DatasetError, match="metadata key 'ids' must be a JSON list of strings"):
        load_dataset(path)


def test_safetensors_ids_count(tmp_path):
    path = tmp_path / "emb.safetensors"
    save_file({"victim/a": victim()}, path, metadata={"ids": json.dumps(IDS + ["extra"])})
    with pytest.raises(DatasetError, match="5 ids for 4 embedding rows"):
        load_dataset(path)


def test_safetensors_int_dtype(tmp_path):
    path = tmp_path / "emb.safetensors"
    save_file({"victim/a": np.ones((4, 6), dtype=np.int64)}, path)
    with pytest.raises(DatasetError, match="space 'victim/a' has dtype int64"):
        load_dataset(path)


def test_safetensors_bfloat16(tmp_path):
    path = write_bf16_safetensors(tmp_path / "emb.safetensors")
    matrix = load_dataset(path).space("victim/a")
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, np.ones((2, 2), dtype=np.float32))


# .parquet


def parquet_table(embedding_type="list", **extra_columns):
    vectors = victim()
    if embedding_type == "fixed":
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
    elif embedding_type == "large":
        column = pa.array(vectors.tolist(), pa.large_list(pa.float64()))
    else:
        column = pa.array(vectors.tolist(), pa.list_(pa.float32()))
    columns = {
        "id": IDS,
        "victim/a": column,
        "caption": ["a cat", "a dog", None, "a fox"],
        "tags": [["pet"], ["pet", "loyal"], None, []],
        "category": ["animal", "animal", "bird", None],
    }
    columns.update(extra_columns)
    return pa.table(columns)


def write_parquet(tmp_path, table):
    path = tmp_path / "emb.parquet"
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize("embedding_type", ["list", "fixed", "large"])
def test_parquet_embedding_types(tmp_path, embedding_type):
    dataset = load_dataset(write_parquet(tmp_path, parquet_table(embedding_type)))
    assert dataset.ids == IDS
    assert dataset.space("victim/a").shape == (4, 6)
    np.testing.assert_array_equal(dataset.space("victim/a"), victim())


def test_parquet_metadata_columns(tmp_path):
    dataset = load_dataset(write_parquet(tmp_path, parquet_table()))
    assert dataset.captions == ["a cat", "a dog", "", "a fox"]
    assert dataset.tags == [["pet"], ["pet", "loyal"], [], []]
    assert dataset.categories == ["animal", "animal", "bird", ""]


def test_parquet_extra_columns(tmp_path):
    capture_dates = [datetime.datetime(2024, 5, day) for day in range(1, 5)]
    table = parquet_table(width=[10, 20, 30, 40], taken=capture_dates)
    dataset = load_dataset(write_parquet(tmp_path, table))
    assert dataset.items[1]["width"] == 20
    assert dataset.items[0]["taken"] == "2024-05-01T00:00:00"


def test_parquet_tags_string(tmp_path):
    table = parquet_table().set_column(3, "tags", pa.array(["pet,small", "pet", "", "wild"]))
    assert load_dataset(write_parquet(tmp_path, table)).tags[0] == ["pet", "small"]


def test_parquet_tags_not_list(tmp_path):
    table = parquet_table().set_column(3, "tags", pa.array([1, 2, 3, 4]))
    with pytest.raises(DatasetError, match=r"item 0 \(id 'cat'\): field 'tags' must be a list of strings"):
        load_dataset(write_parquet(tmp_path, table))


def test_parquet_missing_id_column(tmp_path):
    table = parquet_table().drop_columns(["id"])
    with pytest.raises(DatasetError, match="missing column 'id'"):
        load_dataset(write_parquet(tmp_path, table))


def test_parquet_null_id(tmp_path):
    table = parquet_table().set_column(0, "id", pa.array(["cat", None, "owl", "fox"]))
    with pytest.raises(DatasetError, match="item 1 has a null id"):
        load_dataset(write_parquet(tmp_path, table))


def test_parquet_no_rows(tmp_path):
    table = pa.table({"id": pa.array([], pa.string()), "victim/a": pa.array([], pa.list_(pa.float32()))})
    with pytest.raises(DatasetError, match="the table has no rows"):
        load_dataset(write_parquet(tmp_path, table))


@pytest.mark.parametrize(
    "column, message",
    [
        (pa.array([[1.0, 2.0], [1.0], [2.0, 3.0], [1.0, 1.0]], pa.list_(pa.float32())), "has vectors of lengths \\[1, 2\\]"),
        (pa.array([[1, 2]] * 4, pa.list_(pa.int32())), "holds lists of int32"),
        (pa.array([[1.0, 2.0], None, [2.0, 3.0], [1.0, 1.0]], pa.list_(pa.float32())), "row 1 is null"),
        (pa.array([[1.0, 2.0], [1.0, None], [2.0, 3.0], [1.0, 1.0]], pa.list_(pa.float32())), "row 1 contains a null"),
    ],
    ids=["ragged", "int", "null-row", "null-value"],
)
def test_parquet_bad_embedding_column(tmp_path, column, message):
    table = pa.table({"id": IDS, "victim/a": column})
    with pytest.raises(DatasetError, match=f"column 'victim/a' {message}"):
        load_dataset(write_parquet(tmp_path, table))


def test_parquet_binary_column(tmp_path):
    table = parquet_table(thumbnail=pa.array([b"\x00"] * 4, pa.binary()))
    with pytest.raises(DatasetError, match="column 'thumbnail' contains binary data"):
        load_dataset(write_parquet(tmp_path, table))


def test_parquet_no_embedding_column(tmp_path):
    table = pa.table({"id": IDS, "caption": ["a", "b", "c", "d"]})
    with pytest.raises(DatasetError, match="no 2-D embedding arrays found"):
        load_dataset(write_parquet(tmp_path, table))


# Empty, unreadable and unsupported files


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".parquet", ".npy"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"emb{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match=f"emb\\{suffix}: the file is empty"):
        load_dataset(path)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".safetensors"])
def test_empty_file_one_space(tmp_path, suffix):
    path = tmp_path / f"emb{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match=f"emb\\{suffix}: the file is empty"):
        from_files({"victim/a": path})


@pytest.mark.parametrize(
    "suffix, message",
    [
        (".npz", "not a .npz archive"),
        (".safetensors", "not a readable safetensors file"),
        (".parquet", "not a readable parquet file"),
    ],
)
def test_garbage_file(tmp_path, suffix, message):
    path = tmp_path / f"emb{suffix}"
    path.write_bytes(b"these bytes are no embedding file at all")
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "emb.csv"
    path.write_text("id,x\ncat,1\n")
    with pytest.raises(DatasetError, match="unsupported file type '.csv'; use one of .npz, .safetensors, .parquet"):
        load_dataset(path)


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="nope.npz: not found; pass 'default', a dataset directory"):
        load_dataset(tmp_path / "nope.npz")


def test_npy_whole_file_suggests_import(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, victim())
    with pytest.raises(DatasetError, match="slime-def data import OUT --space victim/NAME="):
        load_dataset(path)


def test_directory_without_manifest(tmp_path):
    with pytest.raises(DatasetError, match="no manifest.json"):
        load_dataset(tmp_path)


def test_load_saved_directory(tmp_path, npz_with_ids):
    saved = save_dataset(load_dataset(npz_with_ids), tmp_path / "set")
    assert load_dataset(saved).ids == IDS


# JSONL metadata joined by id


def test_metadata_joined_by_id(npz_with_ids, metadata):
    dataset = load_dataset(npz_with_ids, metadata=metadata)
    assert dataset.ids == IDS
    assert dataset.captions == ["a cat", "a dog", "an owl", "a fox"]
    assert dataset.tags == [["pet"], ["pet"], ["bird", "night"], []]
    assert dataset.items[1]["rating"] == 4.5
    assert dataset.items[0]["source"] == "cam"


def test_metadata_keeps_embeddings(npz_with_ids, metadata):
    dataset = load_dataset(npz_with_ids, metadata=metadata)
    assert dataset.space("victim/a").tobytes() == victim().tobytes()


def test_metadata_extra_ids_logged(npz_with_ids, metadata, caplog):
    with caplog.at_level(logging.WARNING, logger="slime_def.data.readers"):
        load_dataset(npz_with_ids, metadata=metadata)
    assert "1 metadata records have ids not in the embeddings" in caplog.text


def test_metadata_integer_ids(tmp_path):
    path = tmp_path / "emb.npz"
    np.savez(path, **{"victim/a": victim()}, ids=np.arange(4))
    records = [{"id": 3, "caption": "three"}, {"id": 0}, {"id": 1}, {"id": 2}]
    dataset = load_dataset(path, metadata=write_jsonl(tmp_path / "meta.jsonl", records))
    assert dataset.captions[3] == "three"


def test_metadata_id_missing(npz_with_ids, tmp_path):
    records = [{"id": "cat"}, {"id": "dog"}, {"id": "fox"}]
    path = write_jsonl(tmp_path / "meta.jsonl", records)
    with pytest.raises(DatasetError, match="meta.jsonl: no metadata for 1 of 4 ids \\(first: 'owl'\\)"):
        load_dataset(npz_with_ids, metadata=path)


def test_metadata_duplicate_id(npz_with_ids, tmp_path):
    records = [{"id": "cat"}, {"id": "dog"}, {"id": "owl"}, {"id": "dog"}, {"id": "fox"}]
    path = write_jsonl(tmp_path / "meta.jsonl", records)
    with pytest.raises(DatasetError, match="meta.jsonl:4: duplicate id 'dog', first on line 2"):
        load_dataset(npz_with_ids, metadata=path)


def test_metadata_line_without_id(npz_with_ids, tmp_path):
    records = [{"id": "cat"}, {"caption": "whose?"}]
    path = write_jsonl(tmp_path / "meta.jsonl", records)
    with pytest.raises(DatasetError, match="meta.jsonl:2: missing field 'id'"):
        load_dataset(npz_with_ids, metadata=path)


def test_metadata_null_id(npz_with_ids, tmp_path):
    records = [{"id": "cat"}, {"id": None}]
    path = write_jsonl(tmp_path / "meta.jsonl", records)
    with pytest.raises(DatasetError, match="meta.jsonl:2: field 'id' is None"):
        load_dataset(npz_with_ids, metadata=path)


def test_metadata_invalid_json_line_3(npz_with_ids, tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_text('{"id": "cat"}\n{"id": "dog"}\n{"id": "owl", caption: "x"}\n{"id": "fox"}\n')
    with pytest.raises(DatasetError, match="meta.jsonl:3: invalid JSON"):
        load_dataset(npz_with_ids, metadata=path)


def test_metadata_empty_file(npz_with_ids, tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match="meta.jsonl: the file is empty"):
        load_dataset(npz_with_ids, metadata=path)


@pytest.mark.parametrize("tags", [7, {"pet": True}, [1, 2]])
def test_metadata_tags_not_list(npz_with_ids, tmp_path, tags):
    records = [{"id": "cat"}, {"id": "dog"}, {"id": "owl", "tags": tags}, {"id": "fox"}]
    path = write_jsonl(tmp_path / "meta.jsonl", records)
    with pytest.raises(DatasetError, match="meta.jsonl:3: field 'tags' must be a list of strings"):
        load_dataset(npz_with_ids, metadata=path)


def test_metadata_blank_lines_counted(npz_with_ids, tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_text('{"id": "cat"}\n\n{"id": "dog", "caption": 5}\n')
    with pytest.raises(DatasetError, match="meta.jsonl:3: field 'caption' must be a string"):
        load_dataset(npz_with_ids, metadata=path)


def test_join_metadata_function(npz_with_ids, metadata):
    dataset = join_metadata(load_dataset(npz_with_ids), metadata)
    assert dataset.captions[2] == "an owl"


# One file per space


@pytest.fixture
def npy_files(tmp_path):
    np.save(tmp_path / "victim.npy", victim())
    np.save(tmp_path / "attacker.npy", attacker())
    return {"victim/a": tmp_path / "victim.npy", "attacker/b": tmp_path / "attacker.npy"}


def test_from_files_npy(npy_files):
    dataset = from_files(npy_files)
    assert dataset.ids == ["0", "1", "2", "3"]
    assert dataset.space("victim/a").tobytes() == victim().tobytes()
    assert dataset.space("attacker/b").tobytes() == attacker().tobytes()


def test_from_files_metadata_in_line_order(npy_files, tmp_path):
    records = [{"id": name, "caption": f"a {name}"} for name in IDS]
    dataset = from_files(npy_files, metadata=write_jsonl(tmp_path / "meta.jsonl", records))
    assert dataset.ids == IDS
    assert dataset.captions == ["a cat", "a dog", "a owl", "a fox"]


def test_from_files_metadata_count(npy_files, tmp_path):
    path = write_jsonl(tmp_path / "meta.jsonl", [{"id": "cat"}, {"id": "dog"}])
    with pytest.raises(DatasetError, match="meta.jsonl: 2 metadata lines for 4 embedding rows"):
        from_files(npy_files, metadata=path)


def test_from_files_metadata_duplicate_id(npy_files, tmp_path):
    records = [{"id": "cat"}, {"id": "dog"}, {"id": "cat"}, {"id": "fox"}]
    path = write_jsonl(tmp_path / "meta.jsonl", records)
    with pytest.raises(DatasetError, match="meta.jsonl:3: duplicate id 'cat', first on line 1"):
        from_files(npy_files, metadata=path)


def test_from_files_metadata_bad_tags(npy_files, tmp_path):
    records = [{"id": "cat"}, {"id": "dog", "tags": 3}, {"id": "owl"}, {"id": "fox"}]
    path = write_jsonl(tmp_path / "meta.jsonl", records)
    with pytest.raises(DatasetError, match="meta.jsonl:2: field 'tags' must be a list of strings"):
        from_files(npy_files, metadata=path)


def test_from_files_ids_joined(tmp_path, metadata):
    np.savez(tmp_path / "victim.npz", v=victim(), ids=np.array(IDS))
    dataset = from_files({"victim/a": tmp_path / "victim.npz"}, metadata=metadata)
    assert dataset.ids == IDS
    assert dataset.captions == ["a cat", "a dog", "an owl", "a fox"]


def test_from_files_safetensors(tmp_path):
    path = tmp_path / "victim.safetensors"
    save_file({"v": victim()}, path, metadata={"ids": json.dumps(IDS)})
    assert from_files({"victim/a": path}).ids == IDS


def test_from_files_ids_disagree(tmp_path):
    np.savez(tmp_path / "victim.npz", v=victim(), ids=np.array(IDS))
    np.savez(tmp_path / "attacker.npz", a=attacker(), ids=np.array(IDS[::-1]))
    spaces = {"victim/a": tmp_path / "victim.npz", "attacker/b": tmp_path / "attacker.npz"}
    with pytest.raises(DatasetError, match="attacker.npz: its ids differ from those in .*victim.npz"):
        from_files(spaces)


def test_from_files_rows_mismatch(npy_files, tmp_path):
    np.save(tmp_path / "attacker.npy", attacker()[:2])
    with pytest.raises(DatasetError, match=r"different numbers of rows \(victim/a: 4, attacker/b: 2\)"):
        from_files(npy_files)


def test_from_files_several_arrays(npz_with_ids):
    with pytest.raises(DatasetError, match="holds 2 arrays .*must hold exactly one"):
        from_files({"victim/a": npz_with_ids})


@pytest.mark.parametrize(
    "array, message",
    [
        (np.ones(4, dtype=np.float32), r"shape \(4,\); expected a 2-D"),
        (np.ones((4, 2, 2), dtype=np.float32), r"shape \(4, 2, 2\); expected a 2-D"),
        (np.ones((4, 6), dtype=np.uint8), "dtype uint8; expected float"),
    ],
    ids=["1-d", "3-d", "uint8"],
)
def test_from_files_bad_npy(tmp_path, array, message):
    np.save(tmp_path / "victim.npy", array)
    with pytest.raises(DatasetError, match=f"space 'victim/a' has {message}"):
        from_files({"victim/a": tmp_path / "victim.npy"})


def test_from_files_object_npy(tmp_path):
    np.save(tmp_path / "victim.npy", np.full((4, 6), 0.5, dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="victim.npy: contains Python objects"):
        from_files({"victim/a": tmp_path / "victim.npy"})


def test_from_files_garbage_npy(tmp_path):
    (tmp_path / "victim.npy").write_bytes(b"plain text, not NumPy")
    with pytest.raises(DatasetError, match="victim.npy: not a .npy file"):
        from_files({"victim/a": tmp_path / "victim.npy"})


def test_from_files_missing(tmp_path):
    with pytest.raises(DatasetError, match="victim.npy: file not found"):
        from_files({"victim/a": tmp_path / "victim.npy"})


def test_from_files_parquet_rejected(tmp_path):
    path = write_parquet(tmp_path, parquet_table())
    with pytest.raises(DatasetError, match="unsupported file type '.parquet' for one space"):
        from_files({"victim/a": path})


def test_from_files_no_spaces():
    with pytest.raises(DatasetError, match="no spaces given"):
        from_files({})


def test_from_files_manifest_fields(npy_files):
    dataset = from_files(npy_files, manifest={"name": "mine", "licence": "MIT"})
    assert dataset.manifest["name"] == "mine"
    assert dataset.manifest["licence"] == "MIT"


# The dataset shipped with the package


@pytest.mark.skipif(
    not (default_dataset_path() / "manifest.json").exists(),
    reason="the default dataset is not built in this checkout (slime-def data build-default writes it)",
)
def test_default_dataset_loads():
    dataset = load_dataset("default")
    assert 700 <= len(dataset) <= 840
    assert dataset.space_names == ["attacker/efficientnet_lite0", "text/minilm", "victim/mobilenet_v2"]


def test_default_dataset_missing(monkeypatch, tmp_path):
    monkeypatch.setattr("slime_def.data.readers.default_dataset_path", lambda: tmp_path)
    with pytest.raises(DatasetError, match="the default dataset is missing from this installation"):
        load_dataset("default")


def test_npz_without_ids_takes_metadata_in_line_order(tmp_path):
    import json

    path = tmp_path / "no_ids.npz"
    rng = np.random.default_rng(0)
    np.savez(path, **{"victim/a": rng.standard_normal((3, 4)), "attacker/b": rng.standard_normal((3, 2))})
    metadata = tmp_path / "items.jsonl"
    rows = [{"id": name, "tags": [name]} for name in ("x", "y", "z")]
    metadata.write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = load_dataset(path, metadata=metadata)
    assert dataset.ids == ["x", "y", "z"]
    assert dataset.tags == [["x"], ["y"], ["z"]]
    assert "ids_from_row_numbers" not in dataset.manifest


def test_npz_without_ids_rejects_line_count_mismatch(tmp_path):
    path = tmp_path / "no_ids.npz"
    np.savez(path, **{"victim/a": np.ones((3, 4))})
    metadata = tmp_path / "items.jsonl"
    metadata.write_text('{"id": "x"}\n{"id": "y"}\n')
    with pytest.raises(DatasetError, match="2 metadata lines for 3 embedding rows"):
        load_dataset(path, metadata=metadata)
