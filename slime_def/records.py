"""Result records: provenance fields and atomic writes.

Every record carries the spec strings, seed, dataset fingerprint and package
versions that produced it. Files are written to a temporary name in the target
folder and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from slime_def.errors import SlimeDefError

TRACKED_PACKAGES = ("slime-def", "jax", "jaxlib", "flax", "optax", "faiss-cpu", "numpy", "scipy")


def package_versions() -> dict[str, str | None]:
    """Return installed versions of the packages that shape the numbers, plus Python's."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def to_json(record: Any) -> str:
    """Serialise a record; NaN and Inf become ``null`` so the output is strict JSON."""
    return json.dumps(_clean(record), indent=2, sort_keys=False)


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy and JAX scalars
        return _clean(value.item())
    return value


def default_file_mode() -> int:
    """Return the mode a new file gets under the process umask (0o644 for umask 022).

    ``tempfile.mkstemp`` creates files readable by the owner only; atomic writes
    restore this mode before renaming, so results stay readable by colleagues.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, and rename it into place.

    The file gets the mode a plain ``open`` would give under the process umask.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_atomic(path: str | os.PathLike, text: str, *, force: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically; refuse to replace a file unless ``force``.

    Raises:
      SlimeDefError: the file exists and ``force`` is false, or its folder is missing.
    """
    path = Path(path)
    if path.exists() and not force:
        raise SlimeDefError(f"{path} already exists; choose another path or pass --force to overwrite it")
    if not path.parent.exists():
        raise SlimeDefError(f"folder {path.parent} does not exist; create it first")
    return write_bytes_atomic(path, text.encode("utf-8"))
