"""Collect the Tux Paint stamps as captioned image records for the default dataset.

The Debian package ``tuxpaint-stamps-default`` installs stamps under
``/usr/share/tuxpaint/stamps/<category path>/<name>.{png,svg}``, each with
``<name>.txt`` whose first line is the English caption (later lines are
translations). One record is made per stamp name:

* the id is the path without suffix, relative to the stamps folder
  (``animals/mammals/equines/zebra``), so ids are stable and sort by category;
* the category is the folder path (``animals/mammals/equines``), and its folder
  names are the category words for tags;
* when both a PNG and an SVG exist, the PNG is used: it is what Tux Paint
  itself shows, and it needs no SVG renderer.

Left out and reported: the ``symbols`` folder (letters, digits, currency and
signs, which name no object a caption could describe), ``<name>_mirror`` files
(a hand-drawn flipped copy of ``<name>`` that Tux Paint uses when a stamp is
mirrored), and stamps with no caption file or an empty first line.
"""

from __future__ import annotations

import os
from pathlib import Path

from slime_def.data.images import IMAGE_SUFFIXES, SkippedFile
from slime_def.errors import SlimeDefError

DEFAULT_STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
DEBIAN_PACKAGE = "tuxpaint-stamps-default"
EXCLUDED_FOLDERS = ("symbols",)
MIRROR_SUFFIX = "_mirror"


def read_caption(path: Path) -> str:
    """Return the first line of a stamp's ``.txt`` file, stripped."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.readline().strip()


def collect_stamps(root: str | os.PathLike | None = None) -> tuple[list[dict], list[SkippedFile]]:
    """Return ``(records, skipped)`` for every stamp under ``root``.

    Each record has ``id``, ``file`` (absolute path), ``caption``, ``category``,
    ``category_words`` and ``source`` (the image path relative to ``root``).
    Records are sorted by id. ``skipped`` lists the stamps left out, with reasons.

    Raises:
      SlimeDefError: ``root`` does not exist or contains no stamps.
    """
    root = Path(root) if root else DEFAULT_STAMPS_DIR
    if not root.is_dir():
        raise SlimeDefError(
            f"stamps folder {root} not found; install the Debian package {DEBIAN_PACKAGE} "
            "or pass the folder that holds the Tux Paint stamps"
        )

    stems: dict[Path, dict[str, Path]] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in EXCLUDED_FOLDERS or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.is_file():
            stems.setdefault(relative.with_suffix(""), {})[path.suffix.lower()] = path

    records, skipped = [], []
    for stem in sorted(stems, key=lambda p: p.as_posix()):
        files = stems[stem]
        image = files.get(".png") or files.get(".jpg") or files.get(".jpeg") or files[".svg"]
        source = image.relative_to(root).as_posix()
        caption_file = root / stem.with_suffix(".txt")

        if stem.name.endswith(MIRROR_SUFFIX) and stem.with_name(stem.name[: -len(MIRROR_SUFFIX)]) in stems:
            skipped.append(SkippedFile(source, "mirrored copy of another stamp, not a separate stamp"))
            continue
        if not caption_file.is_file():
            skipped.append(SkippedFile(source, f"no caption file {stem.name}.txt"))
            continue
        caption = read_caption(caption_file)
        if not caption:
            skipped.append(SkippedFile(source, f"empty first line in {stem.name}.txt"))
            continue

        category = stem.parent.as_posix()
        records.append(
            {
                "id": stem.as_posix(),
                "file": str(image),
                "caption": caption,
                "category": category,
                "category_words": list(stem.parent.parts),
                "source": source,
            }
        )

    if not records:
        raise SlimeDefError(f"no captioned stamps found under {root}; expected <category>/<name>.png with <name>.txt")
    return records, skipped
