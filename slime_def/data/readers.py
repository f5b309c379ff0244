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

from slime_def.data.dataset import MANIFEST, EmbeddingDataset, load_dataset_dir, read_jsonl
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
    if metadata is not None:
        dataset = join_metadata(dataset, metadata)
    return dataset


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
    if ids is None:
        ids = [str(i) for i in range(n)]
    if items is None:
        items = [{} for _ in range(n)]
    return EmbeddingDataset(ids=ids, spaces=spaces, items=items, manifest={"name": path.stem}, origin=str(path))


def _common_rows(spaces: Mapping[str, np.ndarray], path: Path) -> int:
    rows = {name: m.shape[0] if m.ndim >= 1 else 0 for name, m in spaces.items()}
    if len(set(rows.values())) > 1:
        listing = ", ".join(f"{name}: {r}" for name, r in rows.items())
        raise DatasetError(f"{path}: spaces have different numbers of rows ({listing}); every space needs one row per item")
    return next(iter(rows.values()))


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], list[str] | None]:
    import zipfile

    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    with archive:
        arrays = {key: archive[key] for key in archive.files}
    ids = None
    if "ids" in arrays:
        raw = arrays.pop("ids")
        if raw.ndim != 1:
            raise DatasetError(f"{path}: 'ids' has shape {raw.shape}; expected a 1-D array of strings")
        ids = [str(v) for v in raw.tolist()]
    return arrays, ids


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], list[str] | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            header = handle.metadata() or {}
            spaces = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable safetensors file ({exc})") from None
    ids = None
    if "ids" in header:
        try:
            ids = json.loads(header["ids"])
        except json.JSONDecodeError:
            raise DatasetError(f"{path}: metadata key 'ids' is not a JSON list of strings") from None
        if not isinstance(ids, list):
            raise DatasetError(f"{path}: metadata key 'ids' is not a JSON list of strings")
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
        elif pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind):
            if not pa.types.is_floating(kind.value_type):
                raise DatasetError(
                    f"{path}: column {name!r} holds lists of {kind.value_type}; an embedding column "
                    "needs lists of floats"
                )
            spaces[name] = _list_column_to_matrix(column, name, path)
        else:
            for row, value in enumerate(column.to_pylist()):
                items[row][name] = value
    ids = [str(v) for v in table.column("id").to_pylist()]
    return spaces, ids, items


def _list_column_to_matrix(column, name: str, path: Path) -> np.ndarray:
    rows = column.to_pylist()
    if any(row is None for row in rows):
        raise DatasetError(f"{path}: column {name!r} has a null row; every item needs a vector")
    lengths = {len(row) for row in rows}
    if len(lengths) != 1:
        raise DatasetError(
            f"{path}: column {name!r} has vectors of lengths {sorted(lengths)[:5]}; all must share one dimension"
        )
    return np.asarray(rows, dtype=np.float32)


def _read_single_matrix(path: Path) -> tuple[np.ndarray, list[str] | None]:
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    _check_nonempty(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False), None
        except (ValueError, OSError) as exc:
            raise DatasetError(f"{path}: not a readable .npy file ({exc})") from None
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

    Row ``i`` of every space file is item ``i``. Ids come from a space file that
    stores them, else from the metadata file in its line order, else ``0..N-1``.

    Args:
      spaces: space name (for example ``"victim/clip_vit_b32"``) to file path.
      metadata: JSONL with one object per item; with ids from the space files it
        is joined by ``id``, otherwise its lines are taken in row order.
      manifest: extra manifest fields (name, licence, provenance, per-space models).
    """
    if not spaces:
        raise DatasetError("no spaces given; pass at least one NAME=FILE pair")
    matrices, ids = {}, None
    for name, file in spaces.items():
        matrix, file_ids = _read_single_matrix(Path(file))
        matrices[name] = matrix
        if file_ids is not None:
            ids = file_ids
    first = next(iter(spaces.values()))
    n = _common_rows(matrices, Path(first))
    records = read_jsonl(metadata) if metadata is not None else None
    if ids is None and records is not None:
        if len(records) != n:
            raise DatasetError(
                f"{metadata}: {len(records)} metadata lines for {n} embedding rows; without ids in the "
                "embedding files, line i describes row i, so the counts must match"
            )
        ids = [str(r.get("id", i)) for i, r in enumerate(records)]
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


def join_metadata(dataset: EmbeddingDataset, metadata: str | os.PathLike) -> EmbeddingDataset:
    """Return ``dataset`` with items replaced by the JSONL records of the same ids.

    Every dataset id needs a record; records for unknown ids are counted and logged.
    """
    records = read_jsonl(metadata)
    by_id: dict[str, dict[str, Any]] = {}
    for number, record in enumerate(records, start=1):
        if "id" not in record:
            raise DatasetError(f"{metadata}:{number}: missing field 'id'")
        key = str(record["id"])
        if key in by_id:
            raise DatasetError(f"{metadata}:{number}: duplicate id {key!r}; each id may appear once")
        by_id[key] = record
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
