"""Decode raster images and render SVGs into RGB PIL images, skipping what fails.

Real image folders hold files that do not decode (truncated or mislabelled
files), SVGs that a safe XML parser rejects (entity declarations) and images too
large to hold in memory. :func:`load_image` raises :class:`ImageSkipped` with a
one-line reason for each of these, and :func:`load_images` collects the reasons
instead of stopping.

Limits:
  * ``MAX_PIXELS`` (default 50 megapixels): a raster image whose header
    declares more pixels is skipped before any pixel data is decoded, which
    also guards against decompression bombs. At 4 bytes per RGBA pixel the
    limit bounds one decoded image to about 200 MB.
  * ``SVG_RENDER_SIZE`` (default 512 px): SVGs are rendered with cairosvg so
    that their longer side has this many pixels, keeping the aspect ratio,
    whatever size the file declares. 512 px leaves the 256 px resize of the
    ImageNet preprocessing a downscale. An SVG whose shorter side would fall
    below one pixel at that scale is skipped.

Transparent pixels are composited on white, so a stamp with an alpha channel
becomes the picture a person sees on a white page.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
from pathlib import Path
from typing import Iterable

logger = logging.getLogger(__name__)

MAX_PIXELS = 50_000_000
SVG_RENDER_SIZE = 512
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
SVG_SUFFIXES = (".svg",)
IMAGE_SUFFIXES = RASTER_SUFFIXES + SVG_SUFFIXES


class ImageSkipped(Exception):
    """An image that could not be decoded, rendered or held in memory."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class SkippedFile:
    """One input file left out of a dataset, with the reason in words."""

    path: str
    reason: str

    def to_record(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def _describe(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def composite_on_white(image):
    """Return an RGB copy of ``image`` with any transparency composited on white."""
    from PIL import Image

    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background.convert("RGB")


def _check_pixels(path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageSkipped(path, f"image has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageSkipped(
            path,
            f"image is {width}x{height} = {width * height / 1e6:.3g} megapixels, over the "
            f"limit of {max_pixels / 1e6:g} megapixels",
        )


def load_raster(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS):
    """Decode a PNG or JPEG file into an RGB image; raise :class:`ImageSkipped` on failure."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            # Image.open reads only the header, so the size check runs before decoding.
            _check_pixels(path, image.width, image.height, max_pixels)
            image.load()
            return composite_on_white(image)
    except ImageSkipped:
        raise
    # Decoders raise many exception types (OSError, SyntaxError, ValueError,
    # DecompressionBombError, MemoryError, struct errors); each one is a skip.
    except Exception as exc:
        raise ImageSkipped(path, f"decoding failed ({_describe(exc)})") from None


def _svg_size(tree) -> tuple[float, float]:
    """Return the width and height an SVG declares, in CSS pixels at 96 dpi."""
    import types

    from cairosvg.helpers import node_format, size

    context = types.SimpleNamespace(dpi=96, context_width=None, context_height=None, font_size=None)
    context.font_size = size(context, "12pt")
    width, height, _ = node_format(context, tree)
    return float(width), float(height)


def render_svg(path: str | os.PathLike, *, render_size: int = SVG_RENDER_SIZE):
    """Render an SVG file with cairosvg on white; raise :class:`ImageSkipped` on failure.

    cairosvg's default parser rejects entity declarations and external
    resources, so a file that tries either is skipped, not rendered.
    """
    from PIL import Image

    try:
        import cairosvg
        from cairosvg.parser import Tree
    except ImportError:
        raise ImageSkipped(path, "cairosvg is not installed; install it with `pip install cairosvg`") from None

    try:
        data = Path(path).read_bytes()
        width, height = _svg_size(Tree(bytestring=data, url=str(path)))
        if not width or not height:
            raise ImageSkipped(path, "the SVG declares no width, height or viewBox")
        scale = render_size / max(width, height)
        output_width = max(1, round(width * scale))
        output_height = max(1, round(height * scale))
        if min(width, height) * scale < 1:
            raise ImageSkipped(
                path, f"the SVG aspect ratio {width:g}x{height:g} leaves under one pixel at {render_size} px"
            )
        png = cairosvg.svg2png(
            bytestring=data,
            url=str(path),
            output_width=output_width,
            output_height=output_height,
            background_color="white",
        )
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            return composite_on_white(image)
    except ImageSkipped:
        raise
    # cairosvg and its XML parser raise many exception types (EntitiesForbidden,
    # ParseError, ValueError, KeyError); each one is a skip.
    except Exception as exc:
        raise ImageSkipped(path, f"SVG rendering failed ({_describe(exc)})") from None


def load_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS, svg_size: int = SVG_RENDER_SIZE):
    """Return ``path`` as an RGB PIL image, choosing the decoder by file suffix.

    Raises:
      ImageSkipped: the file is missing, has an unsupported suffix, fails to
        decode or render, or exceeds ``max_pixels``.
    """
    suffix = Path(path).suffix.lower()
    if not Path(path).is_file():
        raise ImageSkipped(path, "file not found")
    if suffix in SVG_SUFFIXES:
        return render_svg(path, render_size=svg_size)
    if suffix in RASTER_SUFFIXES:
        return load_raster(path, max_pixels=max_pixels)
    raise ImageSkipped(path, f"unsupported file type {suffix or '(none)'}; expected one of {', '.join(IMAGE_SUFFIXES)}")


def load_images(paths: Iterable[str | os.PathLike], **options):
    """Load many images; return ``(images, skipped)``.

    ``images`` maps each loaded path (as given, converted to str) to its RGB
    image; ``skipped`` lists a :class:`SkippedFile` for every other path, in
    input order. Each skip is logged at warning level.
    """
    images, skipped = {}, []
    for path in paths:
        try:
            images[str(path)] = load_image(path, **options)
        except ImageSkipped as exc:
            logger.warning("skipped %s: %s", path, exc.reason)
            skipped.append(SkippedFile(str(path), exc.reason))
    return images, skipped
