"""A JSONL results store: one evaluation record per line, appended crash-safely.

Each line is the compact JSON of one record from
:func:`slime_def.evaluate.run.attack_defense`. A record is identified by its
:func:`record_key`: the defense spec (parameters sorted, numbers compared by
value), threat, seed, dataset fingerprint, victim and attacker space,
retriever, aligner, align_pairs, k and auxiliary_fraction. A sweep skips every
setting whose key is already in the store, so an interrupted sweep resumes
where it stopped.

Crash safety: a record is encoded to one line and written with a single
``write`` on a file opened in append mode, then flushed and fsynced. A crash
therefore leaves at most a truncated last line. Readers report that line
(file and line number) and skip it; :meth:`ResultStore.open_for_append` drops
it before the next append, so new records start on a fresh line. Any other
line that is not a JSON record is an error that names the line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from slime_def.errors import SlimeDefError
from slime_def.records import to_json
from slime_def.specs import Spec, format_spec, parse_chain

logger = logging.getLogger(__name__)

try:  # POSIX only: a lock stops two sweeps from appending to one store at once.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class StoreError(SlimeDefError):
    """A results store that cannot be read or written; the message names the file and line."""


class RecordKey(NamedTuple):
    """The fields that identify one run setting in a store (see the module docstring)."""

    defense: str
    threat: str
    seed: int
    fingerprint: str
    victim_space: str | None
    attacker_space: str | None
    retriever: str
    aligner: str
    align_pairs: int
    k: int
    auxiliary_fraction: float


def _key_value(value: Any) -> Any:
    # Spec values 1 and 1.0 configure the same defense, so numbers compare as floats.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return float(value)


def key_spec(spec: str) -> str:
    """Return ``spec`` with each component's parameters sorted by name and numbers as floats.

    Two spellings of one setting, ``gaussian_dp(epsilon=10, delta=1e-5)`` and
    ``gaussian_dp(delta=1e-05, epsilon=10.0)``, give the same text.
    """
    parts = parse_chain(spec)
    normal = tuple(
        Spec(part.name, tuple((name, _key_value(value)) for name, value in sorted(part.kwargs)))
        for part in parts
    )
    return format_spec(normal)


def make_key(
    *, defense: str, threat: str, seed: int, fingerprint: str, victim_space: str | None,
    attacker_space: str | None, retriever: str, aligner: str, align_pairs: int, k: int,
    auxiliary_fraction: float,
) -> RecordKey:
    """Build a :class:`RecordKey` from run options, normalising the defense spec."""
    return RecordKey(
        key_spec(defense), threat, int(seed), fingerprint, victim_space, attacker_space,
        retriever, aligner, int(align_pairs), int(k), float(auxiliary_fraction),
    )


def record_key(record: dict[str, Any]) -> RecordKey:
    """Return the key of a stored record.

    Raises:
      KeyError: the record lacks one of the key fields.
    """
    data = record["dataset"]
    return make_key(
        defense=record["defense"], threat=record["threat"], seed=record["seed"],
        fingerprint=data["fingerprint"], victim_space=data.get("victim_space"),
        attacker_space=data.get("attacker_space"), retriever=record["retriever"],
        aligner=record["aligner"], align_pairs=record["align_pairs"], k=record["k"],
        auxiliary_fraction=record["auxiliary_fraction"],
    )


def encode_record(record: dict[str, Any]) -> bytes:
    """Encode a record as one compact JSON line; NaN and Inf become ``null``."""
    cleaned = json.loads(to_json(record))
    return (json.dumps(cleaned, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


@dataclasses.dataclass
class StoreContents:
    """The records read from a store, in file order, with what was skipped.

    Attributes:
      records: the parsed records, one per distinct key (the first occurrence).
      lines: the 1-based line number of each record in ``records``.
      truncated_line: the line number of a skipped truncated last line, else ``None``.
      duplicates: line numbers of records whose key an earlier line already has.
    """

    records: list[dict[str, Any]]
    lines: list[int]
    truncated_line: int | None = None
    duplicates: list[int] = dataclasses.field(default_factory=list)

    def keys(self) -> set[RecordKey]:
        return {record_key(record) for record in self.records}


class ResultStore:
    """A JSONL file of evaluation records.

    Args:
      path: the store file; it need not exist yet.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> StoreContents:
        """Parse every line; warn about and skip a truncated last line.

        A missing file reads as an empty store.

        Raises:
          StoreError: a line other than the unterminated last one is not a JSON
            object with the key fields (the message names the file and line).
        """
        if not self.path.exists():
            return StoreContents([], [])
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a folder; the results store is a .jsonl file")
        data = self.path.read_bytes()
        return _parse(data, self.path)

    @contextlib.contextmanager
    def open_for_append(self) -> Iterator["StoreWriter"]:
        """Lock the store, drop a truncated last line, and yield a writer.

        Raises:
          StoreError: another process holds the lock (a second sweep on the same
            store), or the store's folder does not exist.
        """
        if not self.path.parent.exists():
            raise StoreError(f"folder {self.path.parent} does not exist; create it first")
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _lock(fd, self.path)
            if created:
                _fsync_folder(self.path.parent)
            _repair_tail(fd, self.path)
            yield StoreWriter(fd, self.path)
        finally:
            os.close(fd)


class StoreWriter:
    """Appends records to an open, locked store; made by :meth:`ResultStore.open_for_append`."""

    def __init__(self, fd: int, path: Path):
        self._fd = fd
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line with one write call, then fsync."""
        line = encode_record(record)
        written = os.write(self._fd, line)
        # A regular file takes the whole buffer unless the disk is full or a signal
        # interrupts the call. Finish the line so the file stays one record per line.
        while written < len(line):
            written += os.write(self._fd, line[written:])
        os.fsync(self._fd)


def _lock(fd: int, path: Path) -> None:
    if fcntl is None:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StoreError(
            f"{path} is locked by another process (a sweep writing to it); "
            "wait for it to finish or write to another store"
        ) from None


def _fsync_folder(folder: Path) -> None:
    # Persist the new directory entry as well as the file's content.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _repair_tail(fd: int, path: Path) -> None:
    """Make the file end with a newline so the next record starts on a fresh line.

    A complete record that only lacks its newline (a hand edit) gets one. A
    truncated record, the trace of a crash mid-write, is removed with a warning.
    """
    size = os.fstat(fd).st_size
    if size == 0:
        return
    data = os.pread(fd, size, 0)
    if data.endswith(b"\n"):
        return
    start = data.rfind(b"\n") + 1
    tail = data[start:]
    line_number = data.count(b"\n") + 1
    if _parse_line(tail) is not None:
        os.write(fd, b"\n")
    else:
        logger.warning(
            "%s line %d: removed a truncated record (an interrupted write); its setting will run again",
            path, line_number,
        )
        os.ftruncate(fd, start)
    os.fsync(fd)


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    """Return the record on ``raw``, or ``None`` if it is not a JSON object."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _parse(data: bytes, path: Path) -> StoreContents:
    raw_lines = data.split(b"\n")
    unterminated = raw_lines.pop()  # b"" when the file ends with a newline
    contents = StoreContents([], [])
    seen: dict[RecordKey, int] = {}

    for number, raw in enumerate(raw_lines, start=1):
        if raw.strip():
            _add(contents, seen, _decode(raw, number, path), number, path)

    if unterminated.strip():
        number = len(raw_lines) + 1
        record = _parse_line(unterminated)
        if record is None:
            logger.warning(
                "%s line %d: skipped a truncated record (an interrupted write); rerun the sweep to redo it",
                path, number,
            )
            contents.truncated_line = number
        else:
            _add(contents, seen, _decode(unterminated, number, path), number, path)

    if contents.duplicates:
        logger.warning(
            "%s: %d records repeat an earlier run setting (lines %s); using the first of each",
            path, len(contents.duplicates), ", ".join(map(str, contents.duplicates[:10])),
        )
    return contents


def _decode(raw: bytes, number: int, path: Path) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path} line {number}: not UTF-8 text ({exc.reason}); the store is corrupt") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(
            f"{path} line {number}: invalid JSON ({exc.msg} at column {exc.colno}); "
            "fix or delete that line, then rerun"
        ) from None
    if not isinstance(value, dict):
        raise StoreError(
            f"{path} line {number}: expected a JSON object (one record), got {type(value).__name__}; "
            "fix or delete that line"
        )
    return value


def _add(contents: StoreContents, seen: dict[RecordKey, int], record: dict[str, Any], number: int,
         path: Path) -> None:
    try:
        key = record_key(record)
    except (KeyError, TypeError, SlimeDefError) as exc:
        raise StoreError(
            f"{path} line {number}: not an evaluation record (missing or invalid field {exc}); "
            "fix or delete that line"
        ) from None
    if key in seen:
        contents.duplicates.append(number)
        return
    seen[key] = number
    contents.records.append(record)
    contents.lines.append(number)
