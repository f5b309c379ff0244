"""The on-disk embedding dataset format and its in-memory form.

A dataset is a directory with three files::

    manifest.json            format version, name, spaces, licence, provenance, fingerprint
    embeddings.safetensors   one float32 tensor (N, d) per space, keyed by space name
    items.jsonl              one JSON object per item, in row order: id, caption, tags,
                             category, source, and any extra keys

Space names are ``role/model`` paths such as ``victim/mobilenet_v2``,
``attacker/efficientnet_lite0`` or ``text/minilm``; the role (``victim``,
``attacker``, ``text`` or any other word) tells ``eval`` which space plays which
part. Row ``i`` of every space and line ``i`` of ``items.jsonl`` describe the
same item.

The fingerprint is a SHA-256 over the ids, every space's name and float32
little-endian bytes, and the items' canonical JSON, so two datasets with the same
fingerprint hold the same numbers and metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from slime_def.errors import DatasetError
from slime_def.records import write_bytes_atomic

FORMAT_NAME = "slime-def-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.safetensors"
ITEMS = "items.jsonl"
_SPACE_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
ITEM_FIELDS = ("id", "caption", "tags", "category", "source")


@dataclasses.dataclass
class EmbeddingDataset:
    """Items with one or more named embedding spaces and per-item metadata.

    Attributes:
      ids: N unique item ids (strings).
      spaces: space name to a float32 array of shape (N, d).
      items: N dicts with at least ``caption`` (str), ``tags`` (list of str),
        ``category`` (str) and ``source`` (str); missing values are "" or [].
      manifest: model names, dimensions, normalisation, licence and provenance.
        ``manifest["spaces"][name]`` contains ``dim``, ``model`` and ``normalization``.
    """

    ids: list[str]
    spaces: dict[str, np.ndarray]
    items: list[dict[str, Any]]
    manifest: dict[str, Any] = dataclasses.field(default_factory=dict)
    origin: str = "<memory>"

    def __post_init__(self):
        self.ids = [_normalise_id(item_id, self.origin, row) for row, item_id in enumerate(self.ids)]
        items = []
        for row, item in enumerate(self.items):
            item_id = self.ids[row] if row < len(self.ids) else None
            where = f"{self.origin}: item {row}" + (f" (id {item_id!r})" if item_id is not None else "")
            items.append(_normalise_item(item, where, item_id))
        self.items = items
        if self.manifest is None:
            self.manifest = {}

        # Validation runs on the float32 values that are stored, so a float64 value that
        # overflows to Inf or a row that underflows to zeros is caught here.
        self.spaces = {
            name: _to_float32(matrix, name=name, origin=self.origin) for name, matrix in self.spaces.items()
        }
        validate(self)

        if not isinstance(self.manifest.get("spaces", {}), dict):
            raise DatasetError(
                f"{self.origin}: manifest field 'spaces' is {type(self.manifest['spaces']).__name__}, "
                "expected an object mapping space names to {dim, model, normalization}"
            )
        spaces_info = self.manifest.setdefault("spaces", {})
        for name, matrix in self.spaces.items():
            info = spaces_info.setdefault(name, {})
            if not isinstance(info, dict):
                raise DatasetError(
                    f"{self.origin}: manifest field 'spaces.{name}' is {info!r}, expected an object "
                    "such as {\"model\": \"clip_vit_b32\"}"
                )
            info["dim"] = int(matrix.shape[1])
            info.setdefault("model", "unknown")
            info.setdefault("normalization", _guess_normalization(matrix))
        for name in list(spaces_info):
            if name not in self.spaces:
                del spaces_info[name]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def space_names(self) -> list[str]:
        return sorted(self.spaces)

    def space(self, name: str) -> np.ndarray:
        """Return the (N, d) float32 matrix of space ``name``."""
        if name not in self.spaces:
            raise DatasetError(
                f"{self.origin}: space {name!r} not found; available spaces: "
                f"{', '.join(self.space_names)}"
            )
        return self.spaces[name]

    def spaces_with_role(self, role: str) -> list[str]:
        """Return the names of spaces whose first path part is ``role``."""
        return [name for name in self.space_names if name.split("/", 1)[0] == role]

    @property
    def captions(self) -> list[str]:
        return [item["caption"] for item in self.items]

    @property
    def tags(self) -> list[list[str]]:
        return [list(item["tags"]) for item in self.items]

    @property
    def categories(self) -> list[str]:
        return [item["category"] for item in self.items]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self)

    def subset(self, rows: Iterable[int]) -> "EmbeddingDataset":
        """Return a new dataset with the given rows, in the given order."""
        rows = np.asarray(list(rows), dtype=np.int64)
        return EmbeddingDataset(
            ids=[self.ids[i] for i in rows],
            spaces={name: matrix[rows] for name, matrix in self.spaces.items()},
            items=[dict(self.items[i]) for i in rows],
            manifest=json.loads(json.dumps(self.manifest)),
            origin=self.origin,
        )


def _guess_normalization(matrix: np.ndarray) -> str:
    norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
    return "l2" if norms.size and np.allclose(norms, 1.0, atol=1e-3) else "none"


def _normalise_id(value: Any, origin: str, row: int) -> str:
    """Return ``value`` as a string id; bytes are decoded as UTF-8."""
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise DatasetError(f"{origin}: id of item {row} is not valid UTF-8 ({value!r})") from None
    if value is None:
        raise DatasetError(f"{origin}: item {row} has a null id; give every item a unique string id")
    if isinstance(value, (list, tuple, dict, set)):
        raise DatasetError(
            f"{origin}: id of item {row} is a {type(value).__name__} ({value!r}); ids must be strings or integers"
        )
    return str(value)


def _normalise_item(item: Mapping[str, Any], where: str, item_id: str | None = None) -> dict[str, Any]:
    """Return a copy of ``item`` with caption, tags, category and source filled in.

    ``where`` starts every error message, such as ``"items.jsonl:3"`` or ``"data.npz: item 2"``.
    A string ``tags`` value is split at ``,``, ``;`` and ``|``. An ``id`` key is dropped
    after checking that it equals ``item_id``, because ids are kept in ``EmbeddingDataset.ids``.
    """
    if not isinstance(item, Mapping):
        raise DatasetError(f"{where}: metadata is {type(item).__name__}, expected a JSON object")
    out = dict(item)
    if "id" in out and item_id is not None and str(out["id"]) != item_id:
        raise DatasetError(
            f"{where}: field 'id' is {out['id']!r} but the row's id is {item_id!r}; "
            "items must be in the same order as the ids"
        )
    out.pop("id", None)
    caption = out.get("caption", "")
    if caption is None:
        caption = ""
    if not isinstance(caption, str):
        raise DatasetError(f"{where}: field 'caption' must be a string, got {caption!r}")
    tags = out.get("tags", [])
    if tags is None:
        tags = []
    if isinstance(tags, str):
        tags = [t for t in re.split(r"[,;|]", tags) if t.strip()]
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise DatasetError(
            f"{where}: field 'tags' must be a list of strings such as [\"red\", \"car\"], got {tags!r}"
        )
    out["caption"] = caption
    out["tags"] = [t.strip() for t in tags if t.strip()]
    for key in ("category", "source"):
        value = out.get(key, "")
        out[key] = "" if value is None else str(value)
    try:
        json.dumps(out)
    except (TypeError, ValueError):
        pass
    else:
        return out
    for key, value in out.items():  # find the field that json.dumps rejected
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise DatasetError(
                f"{where}: field {key!r} contains a {type(value).__name__} value, which JSON cannot store; "
                "convert it to a string, number, list or object"
            ) from None
    raise DatasetError(f"{where}: the metadata cannot be stored as JSON; use string keys and plain JSON values")


def _to_float32(matrix: Any, *, name: str, origin: str) -> np.ndarray:
    """Convert a floating matrix to float32; other dtypes pass through for :func:`validate_matrix`.

    A float64 (or wider) matrix is checked first, because values above the float32
    maximum would silently become Inf and a row of tiny values would become zeros.
    """
    try:
        matrix = np.asarray(matrix)
    except ValueError as exc:
        raise DatasetError(f"{origin}: space {name!r} is not a rectangular array ({exc})") from None
    if matrix.dtype.name == "bfloat16":  # ml_dtypes' bfloat16 is not a NumPy floating subtype
        return np.ascontiguousarray(matrix, dtype=np.float32)
    if not np.issubdtype(matrix.dtype, np.floating) or matrix.dtype == np.float32:
        return np.ascontiguousarray(matrix)
    if matrix.dtype.itemsize <= 4 or matrix.ndim != 2:
        return np.ascontiguousarray(matrix, dtype=np.float32)

    float32_max = float(np.finfo(np.float32).max)
    too_large = np.isfinite(matrix) & (np.abs(matrix) > float32_max)
    if too_large.any():
        row = int(np.argwhere(too_large)[0, 0])
        raise DatasetError(
            f"{origin}: space {name!r} row {row} has values beyond the float32 range "
            f"(±{float32_max:.3g}); rescale the embeddings"
        )
    converted = np.ascontiguousarray(matrix, dtype=np.float32)
    lost = np.any(matrix != 0, axis=1) & ~np.any(converted != 0, axis=1)
    if lost.any():
        raise DatasetError(
            f"{origin}: space {name!r} row {int(np.flatnonzero(lost)[0])} becomes all zeros in float32 "
            "because its values are below the float32 range; rescale the embeddings"
        )
    return converted


def validate(dataset: EmbeddingDataset) -> None:
    """Check ids, shapes, dtypes and values; raise :class:`DatasetError` naming the fix."""
    origin = dataset.origin
    n = len(dataset.ids)
    if n == 0:
        raise DatasetError(f"{origin}: the dataset has no items; add at least one row")
    seen: dict[str, int] = {}
    for row, item_id in enumerate(dataset.ids):
        if item_id == "":
            raise DatasetError(f"{origin}: item {row} has an empty id; give every item a unique id")
        if item_id in seen:
            raise DatasetError(
                f"{origin}: duplicate id {item_id!r} at rows {seen[item_id]} and {row}; ids must be unique"
            )
        seen[item_id] = row
    if len(dataset.items) != n:
        raise DatasetError(
            f"{origin}: {len(dataset.items)} metadata items for {n} ids; each id needs one item"
        )
    if not dataset.spaces:
        raise DatasetError(f"{origin}: no embedding space; add at least one (N, d) matrix")
    for name, matrix in dataset.spaces.items():
        validate_matrix(matrix, name=name, origin=origin, rows=n)


def validate_matrix(matrix: np.ndarray, *, name: str, origin: str, rows: int | None = None) -> None:
    """Check one embedding matrix: rank 2, real floats, finite, no all-zero row."""
    if not isinstance(name, str) or not _SPACE_NAME.match(name):
        raise DatasetError(
            f"{origin}: invalid space name {name!r}; use letters, digits, '_', '.', '-' and '/' "
            "such as 'victim/clip_vit_b32'"
        )
    if matrix.ndim != 2:
        raise DatasetError(
            f"{origin}: space {name!r} has shape {matrix.shape}; expected a 2-D (N, d) matrix"
        )
    if not np.issubdtype(matrix.dtype, np.floating):
        raise DatasetError(
            f"{origin}: space {name!r} has dtype {matrix.dtype}; expected float16, float32 or float64"
        )
    if matrix.shape[1] == 0:
        raise DatasetError(f"{origin}: space {name!r} has 0 dimensions; expected d >= 1")
    if rows is not None and matrix.shape[0] != rows:
        raise DatasetError(
            f"{origin}: space {name!r} has {matrix.shape[0]} rows but there are {rows} ids; "
            "every space needs one row per id"
        )
    finite = np.isfinite(matrix)
    if not finite.all():
        row = int(np.argwhere(~finite)[0, 0])
        raise DatasetError(
            f"{origin}: space {name!r} row {row} contains NaN or Inf; drop or repair that item"
        )
    zero_rows = np.flatnonzero(~np.any(matrix != 0, axis=1))
    if zero_rows.size:
        raise DatasetError(
            f"{origin}: space {name!r} row {int(zero_rows[0])} is all zeros "
            f"({zero_rows.size} such rows); a zero vector has no direction, so drop those items"
        )


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def fingerprint(dataset: EmbeddingDataset) -> str:
    """Return ``sha256:<hex>`` over ids, spaces (float32 LE bytes) and items."""
    digest = hashlib.sha256()
    digest.update(_canonical_json(list(dataset.ids)))
    for name in sorted(dataset.spaces):
        matrix = np.ascontiguousarray(dataset.spaces[name], dtype="<f4")
        # The name goes in length-prefixed, so no name can run into the shape bytes.
        digest.update(np.asarray([len(name.encode())], dtype="<i8").tobytes())
        digest.update(name.encode())
        digest.update(np.asarray(matrix.shape, dtype="<i8").tobytes())
        digest.update(matrix.tobytes())
    digest.update(_canonical_json(dataset.items))
    return "sha256:" + digest.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)


def save_dataset(dataset: EmbeddingDataset, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``dataset`` to ``directory`` in the format above; return the path.

    Each file is written to a temporary name and renamed, and the manifest goes
    last, so a directory with a manifest always contains a complete dataset.
    """
    from safetensors.numpy import save

    directory = Path(directory)
    if (directory / MANIFEST).exists() and not overwrite:
        raise DatasetError(f"{directory}: a dataset already exists there; pass overwrite=True to replace it")
    if directory.exists() and not directory.is_dir():
        raise DatasetError(f"{directory}: exists and is not a directory; choose another output path")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{directory}: cannot create the directory ({exc.strerror})") from None

    manifest = json.loads(json.dumps(dataset.manifest))
    manifest.update(
        {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "n_items": len(dataset),
            "fingerprint": dataset.fingerprint,
            "files": {"embeddings": EMBEDDINGS, "items": ITEMS},
        }
    )
    manifest.setdefault("name", directory.name)
    tensors = {name: np.ascontiguousarray(m, dtype=np.float32) for name, m in dataset.spaces.items()}
    lines = [
        json.dumps({"id": item_id, **item}, ensure_ascii=False, sort_keys=False)
        for item_id, item in zip(dataset.ids, dataset.items)
    ]

    if (directory / MANIFEST).exists():
        (directory / MANIFEST).unlink()
    _atomic_write_bytes(directory / EMBEDDINGS, save(tensors))
    _atomic_write_bytes(directory / ITEMS, ("\n".join(lines) + "\n").encode())
    _atomic_write_bytes(directory / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False).encode() + b"\n")
    return directory


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSONL file of objects; an invalid line raises with its line number."""
    return [record for _, record in read_jsonl_numbered(path)]


def read_jsonl_numbered(path: str | os.PathLike) -> list[tuple[int, dict[str, Any]]]:
    """Read a JSONL file as (line number, object) pairs, skipping blank lines."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    if not path.is_file():
        raise DatasetError(f"{path}: is a directory; pass a JSONL file with one JSON object per line")
    records = []
    # Lines are decoded one at a time so that a decoding error names its own line.
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # the UTF-8 byte order mark some editors write
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DatasetError(f"{path}:{number}: not valid UTF-8 text; save the file as UTF-8 JSONL") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno}); fix or remove that line") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            records.append((number, record))
    if not records:
        raise DatasetError(f"{path}: the file is empty; expected one JSON object per line")
    return records


def enable_bfloat16() -> None:
    """Register bfloat16 with NumPy through ml_dtypes (a JAX dependency) so safetensors can read it."""
    try:
        import ml_dtypes  # noqa: F401  (importing registers the dtype)
    except ImportError:
        pass


def _file_in_directory(directory: Path, files: Mapping[str, Any], key: str, default: str) -> Path:
    """Return the path that manifest field ``files[key]`` names, which must be a plain file name."""
    name = files.get(key, default)
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise DatasetError(
            f"{directory / MANIFEST}: field 'files.{key}' is {name!r}; expected a file name inside "
            f"the dataset directory, such as {default!r}"
        )
    return directory / name


def load_dataset_dir(directory: str | os.PathLike, *, verify: bool = True) -> EmbeddingDataset:
    """Read a dataset directory written by :func:`save_dataset`.

    Args:
      verify: recompute the fingerprint and compare it with the manifest's.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    enable_bfloat16()
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        raise DatasetError(f"{directory}: no {MANIFEST}; not a slime-def dataset directory")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{manifest_path}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{manifest_path}: not valid UTF-8 text") from None
    if not isinstance(manifest, dict):
        raise DatasetError(f"{manifest_path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT_NAME:
        raise DatasetError(f"{manifest_path}: field 'format' is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{manifest_path}: format_version {manifest.get('format_version')!r} is not supported "
            f"(this slime-def reads version {FORMAT_VERSION}); upgrade slime-def"
        )
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise DatasetError(
            f"{manifest_path}: field 'files' is {type(files).__name__}, expected an object such as "
            f'{{"embeddings": "{EMBEDDINGS}", "items": "{ITEMS}"}}'
        )
    embeddings_path = _file_in_directory(directory, files, "embeddings", EMBEDDINGS)
    items_path = _file_in_directory(directory, files, "items", ITEMS)
    if not embeddings_path.exists():
        raise DatasetError(f"{embeddings_path}: file not found; the dataset directory is incomplete")
    try:
        spaces = load_file(str(embeddings_path))
    except (SafetensorError, OSError) as exc:
        raise DatasetError(f"{embeddings_path}: not a readable safetensors file ({exc})") from None
    except TypeError as exc:
        # safetensors raises TypeError for dtypes NumPy lacks, such as bfloat16.
        raise DatasetError(
            f"{embeddings_path}: a tensor has a dtype NumPy cannot read ({exc}); store float32"
        ) from None
    numbered = read_jsonl_numbered(items_path)
    records = [record for _, record in numbered]
    ids = []
    for number, record in numbered:
        if "id" not in record:
            raise DatasetError(f"{items_path}:{number}: missing field 'id'")
        ids.append(record["id"])
    dataset = EmbeddingDataset(ids=ids, spaces=spaces, items=records, manifest=manifest, origin=str(directory))
    if verify and manifest.get("fingerprint") and manifest["fingerprint"] != dataset.fingerprint:
        raise DatasetError(
            f"{directory}: content does not match the manifest fingerprint "
            f"({manifest['fingerprint']}); the files were changed after writing, so rebuild or re-save it"
        )
    return dataset
