"""Readers for embedding datasets in the common file forms.

``load_dataset`` accepts:

* ``"default"``: the dataset shipped inside the package;
* a dataset directory with a ``manifest.json`` (see :mod:`slime_def.data.dataset`);
* one file holding several named spaces: ``.npz`` (one array per space, plus an
  optional string array ``ids``), ``.safetensors`` (one tensor per space, ids
  optionally as a JSON list under the metadata key ``ids``) or ``.parquet``
  (an ``id`` column, one list-of-floats column per space, and optional
  ``caption``, ``tags``, ``category`` and ``source`` columns);
* with ``metadata=`` a JSONL file with one object per item (``id`` plus
  ``caption``, ``tags``, ``category``, ``source``) joined to the embeddings by id.

``from_files`` assembles a dataset from one file per space (``.npy``, or an
``.npz``/``.safetensors`` holding exactly one array).
"""

from __future__ import annotations

import json
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from slime_def.data.dataset import (
    MANIFEST,
    EmbeddingDataset,
    _normalise_item,
    enable_bfloat16,
    load_dataset_dir,
    read_jsonl_numbered,
)
from slime_def.errors import DatasetError

logger = logging.getLogger(__name__)

SUFFIXES = (".npz", ".safetensors", ".parquet", ".npy")
METADATA_FIELDS = ("caption", "tags", "category", "source")


def default_dataset_path() -> Path:
    """Return the directory of the dataset shipped with the package."""
    return Path(str(resources.files("slime_def") / "datasets" / "default"))


def load_dataset(
    source: str | os.PathLike = "default",
    *,
    metadata: str | os.PathLike | None = None,
    verify: bool = True,
) -> EmbeddingDataset:
    """Load an embedding dataset from a name, a directory or a file.

    Args:
      source: ``"default"``, a dataset directory, or a ``.npz``,
        ``.safetensors`` or ``.parquet`` file.
      metadata: optional JSONL file of per-item metadata joined by ``id``.
      verify: check a directory's content against its manifest fingerprint.

    Raises:
      DatasetError: the source is missing, malformed, or fails validation.
    """
    if str(source) == "default":
        path = default_dataset_path()
        if not (path / MANIFEST).exists():
            raise DatasetError(
                f"the default dataset is missing from this installation ({path}); "
                "reinstall slime-def or rebuild it with `slime-def data build-default`"
            )
        dataset = load_dataset_dir(path, verify=verify)
    else:
        path = Path(source)
        if not path.exists():
            raise DatasetError(
                f"{path}: not found; pass 'default', a dataset directory or a "
                f"{'/'.join(SUFFIXES[:3])} file"
            )
        if path.is_dir():
            dataset = load_dataset_dir(path, verify=verify)
        else:
            dataset = _load_file(path)
            if metadata is not None and dataset.manifest.get("ids_from_row_numbers"):
                return _attach_in_line_order(dataset, metadata)
    if metadata is not None:
        dataset = join_metadata(dataset, metadata)
    return dataset


def _attach_in_line_order(dataset: EmbeddingDataset, metadata: str | os.PathLike) -> EmbeddingDataset:
    """Attach metadata to a file that stores no ids: line i of the JSONL describes row i."""
    numbered = read_jsonl_numbered(metadata)
    if len(numbered) != len(dataset):
        raise DatasetError(
            f"{metadata}: {len(numbered)} metadata lines for {len(dataset)} embedding rows in "
            f"{dataset.origin}, which stores no ids, so line i must describe row i and the counts must "
            "match; or store ids in the embedding file (an 'ids' array in .npz, the metadata key 'ids' "
            "in .safetensors, an 'id' column in .parquet)"
        )
    ids = _ids_in_line_order(numbered, metadata)
    manifest = {key: value for key, value in dataset.manifest.items() if key != "ids_from_row_numbers"}
    return EmbeddingDataset(
        ids=ids, spaces=dataset.spaces, items=[record for _, record in numbered], manifest=manifest,
        origin=dataset.origin,
    )


def _check_nonempty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: the file is empty")


def _load_file(path: Path) -> EmbeddingDataset:
    _check_nonempty(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        spaces, ids = _read_npz(path)
        items = None
    elif suffix == ".safetensors":
        spaces, ids = _read_safetensors(path)
        items = None
    elif suffix == ".parquet":
        spaces, ids, items = _read_parquet(path)
    elif suffix == ".npy":
        raise DatasetError(
            f"{path}: a .npy file holds one unnamed matrix; name its space with "
            f"`slime-def data import OUT --space victim/NAME={path}` (or from_files in Python)"
        )
    else:
        raise DatasetError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")
    if not spaces:
        raise DatasetError(f"{path}: no 2-D embedding arrays found; store each space as an (N, d) array")
    n = _common_rows(spaces, path)
    manifest: dict[str, Any] = {"name": path.stem}
    if ids is None:
        ids = [str(i) for i in range(n)]
        manifest["ids_from_row_numbers"] = True
    _check_id_count(ids, n, path)
    if items is None:
        items = [{} for _ in range(n)]
    return EmbeddingDataset(ids=ids, spaces=spaces, items=items, manifest=manifest, origin=str(path))


def _check_id_count(ids: list, rows: int, path: Path) -> None:
    if len(ids) != rows:
        raise DatasetError(
            f"{path}: {len(ids)} ids for {rows} embedding rows; store exactly one id per row"
        )


def _common_rows(spaces: Mapping[str, np.ndarray], path: Path) -> int:
    """Return the row count shared by all spaces; each must be a 2-D (N, d) array."""
    for name, matrix in spaces.items():
        if matrix.ndim != 2:
            raise DatasetError(
                f"{path}: space {name!r} has shape {matrix.shape}; expected a 2-D (N, d) matrix"
            )
    rows = {name: m.shape[0] for name, m in spaces.items()}
    if len(set(rows.values())) > 1:
        listing = ", ".join(f"{name}: {r}" for name, r in rows.items())
        raise DatasetError(f"{path}: spaces have different numbers of rows ({listing}); every space needs one row per item")
    return next(iter(rows.values()))


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], list[str] | None]:
    import zipfile

    # np.load also accepts .npy and pickle files whatever their suffix, so check for a zip first.
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path}: not a .npz archive (no zip header); write it with numpy.savez")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                try:
                    arrays[key] = archive[key]
                except ValueError as exc:
                    if "allow_pickle" not in str(exc):
                        raise
                    raise DatasetError(
                        f"{path}: array {key!r} contains Python objects (dtype object), which are not "
                        "loaded for safety; save embeddings as floats and ids with dtype str"
                    ) from None
    except DatasetError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    ids = None
    if "ids" in arrays:
        raw = arrays.pop("ids")
        if raw.ndim != 1:
            raise DatasetError(f"{path}: 'ids' has shape {raw.shape}; expected a 1-D array of strings")
        ids = raw.tolist()
    return arrays, ids


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], list[str] | None]:
    from safetensors import SafetensorError, safe_open

    enable_bfloat16()
    spaces = {}
    try:
        with safe_open(str(path), framework="numpy") as handle:
            header = handle.metadata() or {}
            for key in handle.keys():
                try:
                    spaces[key] = handle.get_tensor(key)
                except TypeError as exc:
                    # safetensors raises TypeError for dtypes NumPy lacks, such as bfloat16
                    # when ml_dtypes is not installed.
                    raise DatasetError(
                        f"{path}: tensor {key!r} has a dtype NumPy cannot read ({exc}); save it as float32"
                    ) from None
    except (SafetensorError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable safetensors file ({exc})") from None
    ids = None
    if "ids" in header:
        try:
            ids = json.loads(header["ids"])
        except json.JSONDecodeError:
            ids = None
        if not isinstance(ids, list) or not all(isinstance(v, (str, int)) for v in ids):
            raise DatasetError(
                f"{path}: metadata key 'ids' must be a JSON list of strings, such as "
                f'metadata={{"ids": json.dumps(ids)}} when saving'
            )
    return spaces, ids


def _read_parquet(path: Path) -> tuple[dict[str, np.ndarray], list[str], list[dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: not a readable parquet file ({exc})") from None
    if "id" not in table.column_names:
        raise DatasetError(f"{path}: missing column 'id'; add one unique id per row")
    if table.num_rows == 0:
        raise DatasetError(f"{path}: the table has no rows")

    spaces: dict[str, np.ndarray] = {}
    items: list[dict[str, Any]] = [{} for _ in range(table.num_rows)]
    for name in table.column_names:
        column = table.column(name)
        kind = column.type
        if name == "id":
            continue
        if name in METADATA_FIELDS:
            for row, value in enumerate(column.to_pylist()):
                items[row][name] = value
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
            raise DatasetError(
                f"{path}: column {name!r} contains binary data, which item metadata cannot store; "
                "drop it or convert it to strings"
            )
        elif pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind):
            if not pa.types.is_floating(kind.value_type):
                raise DatasetError(
                    f"{path}: column {name!r} holds lists of {kind.value_type}; an embedding column "
                    "needs lists of floats"
                )
            spaces[name] = _list_column_to_matrix(column, name, path)
        else:
            for row, value in enumerate(column.to_pylist()):
                items[row][name] = _json_value(value)
    # Ids are converted to strings, and null ids rejected, by EmbeddingDataset.
    ids = table.column("id").to_pylist()
    return spaces, ids, items


def _json_value(value: Any) -> Any:
    """Return a parquet cell as JSON-storable data: dates, times and decimals become strings."""
    import datetime
    import decimal

    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (datetime.timedelta, decimal.Decimal)):
        return str(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, tuple):  # map columns arrive as lists of (key, value) tuples
        return [_json_value(v) for v in value]
    return value


def _list_column_to_matrix(column, name: str, path: Path) -> np.ndarray:
    rows = column.to_pylist()
    for index, row in enumerate(rows):
        if row is None:
            raise DatasetError(f"{path}: column {name!r} row {index} is null; every item needs a vector")
        if any(value is None for value in row):
            raise DatasetError(
                f"{path}: column {name!r} row {index} contains a null value; every vector needs all d values"
            )
    lengths = {len(row) for row in rows}
    if len(lengths) != 1:
        raise DatasetError(
            f"{path}: column {name!r} has vectors of lengths {sorted(lengths)[:5]}; all must share one dimension"
        )
    return np.asarray(rows, dtype=np.float32)


def _read_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic != b"\x93NUMPY":
        raise DatasetError(f"{path}: not a .npy file (no NumPy header); write it with numpy.save")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DatasetError(
                f"{path}: contains Python objects (dtype object), which are not loaded for safety; "
                "save the embeddings as a float array"
            ) from None
        raise DatasetError(f"{path}: not a readable .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npy file ({exc})") from None


def _read_single_matrix(path: Path) -> tuple[np.ndarray, list[str] | None]:
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    _check_nonempty(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _read_npy(path), None
    if suffix in (".npz", ".safetensors"):
        arrays, ids = _read_npz(path) if suffix == ".npz" else _read_safetensors(path)
        if len(arrays) != 1:
            raise DatasetError(
                f"{path}: holds {len(arrays)} arrays ({', '.join(sorted(arrays))}); a per-space file "
                "must hold exactly one, or load the whole file with load_dataset"
            )
        return next(iter(arrays.values())), ids
    raise DatasetError(f"{path}: unsupported file type {suffix!r} for one space; use .npy, .npz or .safetensors")


def from_files(
    spaces: Mapping[str, str | os.PathLike],
    *,
    metadata: str | os.PathLike | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> EmbeddingDataset:
    """Assemble a dataset from one file per space, plus JSONL metadata.

    Row ``i`` of every space file is item ``i``. Ids come from the space files that
    store them, which must agree, else from the metadata file in its line order, else ``0..N-1``.

    Args:
      spaces: space name (for example ``"victim/clip_vit_b32"``) to file path.
      metadata: JSONL with one object per item; with ids from the space files it
        is joined by ``id``, otherwise its lines are taken in row order.
      manifest: extra manifest fields (name, licence, provenance, per-space models).
    """
    if not spaces:
        raise DatasetError("no spaces given; pass at least one NAME=FILE pair")
    matrices, ids, ids_file = {}, None, None
    for name, file in spaces.items():
        matrix, file_ids = _read_single_matrix(Path(file))
        matrices[name] = matrix
        if file_ids is None:
            continue
        _check_id_count(file_ids, matrix.shape[0] if matrix.ndim else 0, Path(file))
        if ids is not None and [str(v) for v in file_ids] != [str(v) for v in ids]:
            raise DatasetError(
                f"{file}: its ids differ from those in {ids_file}; row i of every space file must "
                "describe the same item, so store the rows in one order"
            )
        ids, ids_file = file_ids, file
    first = next(iter(spaces.values()))
    n = _common_rows(matrices, Path(first))
    numbered = read_jsonl_numbered(metadata) if metadata is not None else None
    records = [record for _, record in numbered] if numbered is not None else None
    if ids is None and records is not None:
        if len(records) != n:
            raise DatasetError(
                f"{metadata}: {len(records)} metadata lines for {n} embedding rows; without ids in the "
                "embedding files, line i describes row i, so the counts must match"
            )
        ids = _ids_in_line_order(numbered, metadata)
        items = records
    else:
        ids = ids if ids is not None else [str(i) for i in range(n)]
        items = [{} for _ in range(n)]
    dataset = EmbeddingDataset(
        ids=ids, spaces=matrices, items=items, manifest=dict(manifest or {}), origin=str(first)
    )
    if records is not None and items is not records:
        dataset = join_metadata(dataset, metadata)
    return dataset


def _ids_in_line_order(numbered: list[tuple[int, dict[str, Any]]], metadata: str | os.PathLike) -> list[str]:
    """Return one id per metadata record: its ``id`` field, else its row number."""
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for row, (number, record) in enumerate(numbered):
        item_id = record.get("id", row)
        if item_id is None or isinstance(item_id, (list, dict)):
            raise DatasetError(f"{metadata}:{number}: field 'id' is {item_id!r}; expected a string id")
        item_id = str(item_id)
        if item_id in first_line:
            raise DatasetError(
                f"{metadata}:{number}: duplicate id {item_id!r}, first on line {first_line[item_id]}; "
                "each id may appear once"
            )
        first_line[item_id] = number
        _normalise_item(record, f"{metadata}:{number}", item_id)
        ids.append(item_id)
    return ids


def join_metadata(dataset: EmbeddingDataset, metadata: str | os.PathLike) -> EmbeddingDataset:
    """Return ``dataset`` with items replaced by the JSONL records of the same ids.

    Every dataset id needs a record; records for unknown ids are counted and logged.
    """
    by_id: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    for number, record in read_jsonl_numbered(metadata):
        if "id" not in record:
            raise DatasetError(f"{metadata}:{number}: missing field 'id'")
        if record["id"] is None or isinstance(record["id"], (list, dict)):
            raise DatasetError(f"{metadata}:{number}: field 'id' is {record['id']!r}; expected a string id")
        key = str(record["id"])
        if key in by_id:
            raise DatasetError(
                f"{metadata}:{number}: duplicate id {key!r}, first on line {first_line[key]}; "
                "each id may appear once"
            )
        _normalise_item(record, f"{metadata}:{number}", key)
        by_id[key] = record
        first_line[key] = number
    missing = [item_id for item_id in dataset.ids if item_id not in by_id]
    if missing:
        raise DatasetError(
            f"{metadata}: no metadata for {len(missing)} of {len(dataset)} ids (first: {missing[0]!r}); "
            "add a line for every embedding id"
        )
    extra = len(by_id) - len(dataset)
    if extra > 0:
        logger.warning("%s: %d metadata records have ids not in the embeddings; ignored", metadata, extra)
    items = [by_id[item_id] for item_id in dataset.ids]
    return EmbeddingDataset(
        ids=dataset.ids, spaces=dataset.spaces, items=items, manifest=dataset.manifest, origin=dataset.origin
    )
