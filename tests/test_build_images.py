"""Image decoding, SVG rendering, alpha compositing and the skip reasons."""

from __future__ import annotations

import pytest

pytest.importorskip("PIL")
pytest.importorskip("cairosvg")

from PIL import Image  # noqa: E402

from slime_def.data.images import ImageSkipped, load_image, load_images  # noqa: E402

XXE_SVG = """<?xml version="1.0"?>
<!DOCTYPE svg [<!ENTITY secret SYSTEM "file:///etc/hostname">]>
<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&secret;</text></svg>
"""
PLAIN_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">
<rect x="0" y="0" width="20" height="20" fill="red"/></svg>
"""


def test_corrupt_png_skipped(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    with pytest.raises(ImageSkipped, match="decoding failed"):
        load_image(path)


def test_svg_with_external_entity_skipped(tmp_path):
    path = tmp_path / "xxe.svg"
    path.write_text(XXE_SVG)
    with pytest.raises(ImageSkipped, match="SVG rendering failed"):
        load_image(path)


def test_oversized_image_skipped_before_decoding(tmp_path):
    path = tmp_path / "large.png"
    Image.new("RGB", (200, 100)).save(path)
    with pytest.raises(ImageSkipped, match="0.02 megapixels, over the limit"):
        load_image(path, max_pixels=10_000)


def test_unsupported_suffix_skipped(tmp_path):
    path = tmp_path / "notes.gif"
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(ImageSkipped, match="unsupported file type .gif"):
        load_image(path)


def test_transparent_png_composited_on_white(tmp_path):
    path = tmp_path / "alpha.png"
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0, 255))
    image.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert loaded.getpixel((3, 3)) == (255, 255, 255)
    assert loaded.getpixel((0, 0)) == (255, 0, 0)


def test_svg_rendered_at_render_size(tmp_path):
    path = tmp_path / "shape.svg"
    path.write_text(PLAIN_SVG)
    loaded = load_image(path, svg_size=128)
    assert loaded.size == (128, 64)
    assert loaded.getpixel((10, 32)) == (255, 0, 0)
    assert loaded.getpixel((100, 32)) == (255, 255, 255)


def test_load_images_collects_reasons(tmp_path):
    good = tmp_path / "good.jpg"
    Image.new("RGB", (8, 8), (0, 128, 0)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    missing = tmp_path / "missing.png"

    images, skipped = load_images([good, bad, missing])

    assert list(images) == [str(good)]
    assert [entry.path for entry in skipped] == [str(bad), str(missing)]
    assert "decoding failed" in skipped[0].reason
    assert skipped[1].reason == "file not found"
