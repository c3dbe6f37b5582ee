"""load_image: the same picture from a PIL image, a file, a data URL, bytes or base64 text; clear errors."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from sgnb.engine.multimodal.image_input import load_image


@pytest.fixture
def picture() -> Image.Image:
    img = Image.new("RGB", (7, 5), (10, 200, 30))
    img.putpixel((3, 2), (250, 0, 120))
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.mode == b.mode == "RGB" and a.size == b.size and a.tobytes() == b.tobytes()


def test_every_input_form_gives_the_same_rgb_image(picture, tmp_path):
    raw = png_bytes(picture)
    path = tmp_path / "pic.png"
    path.write_bytes(raw)
    b64 = base64.b64encode(raw).decode()
    for source in (picture, str(path), path, f"file://{path}", raw, bytearray(raw), b64,
                   f"data:image/png;base64,{b64}"):
        assert same_pixels(load_image(source), picture), type(source)


def test_converts_grayscale_and_composites_transparency_on_white():
    gray = Image.new("L", (2, 2), 77)
    assert load_image(gray).getpixel((0, 0)) == (77, 77, 77)
    rgba = Image.new("RGBA", (2, 2), (0, 0, 0, 0))       # fully transparent black
    rgba.putpixel((1, 1), (255, 0, 0, 255))
    loaded = load_image(png_bytes(rgba))
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((1, 1)) == (255, 0, 0)


def test_applies_exif_orientation_of_encoded_images():
    img = Image.new("RGB", (4, 2), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6                                      # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).size == (2, 4)


def test_corrupt_bytes_are_a_value_error_naming_the_input(picture):
    with pytest.raises(ValueError, match=r"image bytes \(9 bytes\) is not a readable image"):
        load_image(b"not a png")
    truncated = png_bytes(picture)[:40]
    with pytest.raises(ValueError, match="is not a readable image"):
        load_image(truncated)


def test_missing_file_is_a_value_error_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere.png"
    for source in (str(missing), missing):
        with pytest.raises(ValueError, match=f"image file '{missing}' does not exist"):
            load_image(source)


def test_http_url_is_refused_without_fetching():
    with pytest.raises(ValueError, match=r"image URL 'https://example.com/cat.png' cannot be fetched"):
        load_image("https://example.com/cat.png")


def test_bad_data_urls_and_types_are_value_errors():
    with pytest.raises(ValueError, match="invalid base64"):
        load_image("data:image/png;base64,@@@")
    with pytest.raises(ValueError, match="no ','"):
        load_image("data:image/png;base64")
    with pytest.raises(ValueError, match="data URL 'data:text/plain,hello' is not a readable image"):
        load_image("data:text/plain,hello")
    with pytest.raises(ValueError, match="got int"):
        load_image(42)
