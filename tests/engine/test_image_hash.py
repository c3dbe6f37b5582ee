"""Image hashes and pad ids: one per picture, whatever form it came in; different pictures differ."""

from __future__ import annotations

import io

from PIL import Image

from sgnb.engine.multimodal.image_hash import PAD_ID_BASE, image_hash, pad_id
from sgnb.engine.multimodal.image_input import load_image


def test_same_pixels_give_the_same_hash_and_pad_id_from_any_source(tmp_path):
    img = Image.new("RGB", (6, 4), (1, 2, 3))
    path = tmp_path / "a.png"
    img.save(path)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    hashes = {image_hash(load_image(source)) for source in (img, str(path), buf.getvalue(), img.copy())}
    assert len(hashes) == 1
    assert pad_id(hashes.pop()) == pad_id(image_hash(img))


def test_different_pictures_get_different_pad_ids():
    base = Image.new("RGB", (6, 4), (1, 2, 3))
    one_pixel = base.copy()
    one_pixel.putpixel((5, 3), (1, 2, 4))
    transposed = Image.new("RGB", (4, 6), (1, 2, 3))     # same bytes, other shape
    ids = [pad_id(image_hash(img)) for img in (base, one_pixel, transposed)]
    assert len(set(ids)) == 3


def test_pad_ids_lie_beyond_any_vocabulary():
    for value in (0, 1, 2**30 - 1, 2**30, 2**64 - 1):
        assert PAD_ID_BASE <= pad_id(value) < PAD_ID_BASE + 2**30
    assert pad_id(5) == PAD_ID_BASE + 5 and pad_id(2**30 + 5) == PAD_ID_BASE + 5
