"""The decoder contract: ingest accepts exactly what training's TensorFlow decoder reads, and every
PIL view of an image (ingest copies, mosaics, augmentation) matches what TensorFlow yields."""

from __future__ import annotations

import io
import struct

import numpy as np
import psycopg
import pytest
from PIL import Image

from painting_ml.data import images
from painting_ml.data import ingest as catalog

pytestmark = pytest.mark.db

RED = (200, 30, 30)


def _bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, **kw)
    return buf.getvalue()


def _noise(w=400, h=300, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h // 10, w // 10, 3)) * 255).astype(np.uint8)).resize((w, h))


def _patched_header(data: bytes, width: int, height: int) -> bytes:
    i = data.find(b"\xff\xc0")
    return data[:i + 5] + struct.pack(">HH", height, width) + data[i + 9:]


def _exif_rotated() -> bytes:
    img = Image.new("RGB", (40, 20), RED)
    img.paste((30, 30, 200), (0, 0, 20, 20))  # blue left half
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    return _bytes(img, format="JPEG", exif=exif.tobytes(), quality=95)


_BASE = Image.new("RGB", (40, 30), RED)
_FULL = _bytes(_noise(), format="JPEG")
CASES = {
    # name: (file bytes, expected probe reason)
    "jpeg": (_bytes(_BASE, format="JPEG"), ""),
    "progressive jpeg": (_bytes(_BASE, format="JPEG", progressive=True), ""),
    "cmyk jpeg": (_bytes(_BASE.convert("CMYK"), format="JPEG"), ""),
    "png rgba": (_bytes(_BASE.convert("RGBA"), format="PNG"), ""),
    "png palette": (_bytes(_BASE.convert("P"), format="PNG"), ""),
    "png 16-bit": (_bytes(Image.fromarray(np.full((30, 40), 40000, np.uint16)), format="PNG"), ""),
    "png gray+alpha": (_bytes(_BASE.convert("LA"), format="PNG"), ""),
    "gif": (_bytes(_BASE.convert("P"), format="GIF"), ""),
    "webp": (_bytes(_BASE, format="WEBP"), ""),
    "webp lossless": (_bytes(_BASE, format="WEBP", lossless=True), ""),
    "bmp rgb": (_bytes(_BASE, format="BMP"), ""),
    "bmp gray": (_bytes(_BASE.convert("L"), format="BMP"), ""),
    "bmp palette": (_bytes(_BASE.convert("P"), format="BMP"), "unsupported_format"),
    "bmp 1-bit": (_bytes(_BASE.convert("1"), format="BMP"), "unsupported_format"),
    "tiff": (_bytes(_BASE, format="TIFF"), "unsupported_format"),
    "float tiff": (_bytes(Image.fromarray(np.full((30, 40), 0.5, np.float32)), format="TIFF"), "unsupported_format"),
    "ico": (_bytes(_BASE, format="ICO"), "unsupported_format"),
    "ppm": (_bytes(_BASE, format="PPM"), "unsupported_format"),
    "truncated jpeg": (_FULL[:len(_FULL) // 2], "undecodable"),
    "jpeg cut short, end marker re-added": (_FULL[:len(_FULL) // 2] + b"\xff\xd9", "undecodable"),
    "jpeg header claims more pixels": (_patched_header(_FULL, 800, 600), "undecodable"),
    "jpeg header claims a bomb": (_patched_header(_FULL, 30000, 30000), "undecodable"),
    "text": (b"this is not an image", "undecodable"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_probe_matches_the_training_decoder(tmp_path, name):
    """Every file ingest accepts, TensorFlow decodes to the same pixels; every other one is a reject
    with a reason (TensorFlow either fails on it or pads it with gray)."""
    import tensorflow as tf

    data, reason = CASES[name]
    path = tmp_path / "image.jpg"  # the name says JPEG whatever the bytes are, as in the wild
    path.write_bytes(data)
    probe = images.probe_image(path, reduced_dir=tmp_path / "copies")
    assert probe.reason == reason, probe
    if reason:
        assert probe.detail
        return
    decoded = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    assert decoded.shape[:2] == (probe.height, probe.width)
    seen = np.asarray(images.read_rgb(path))
    assert seen.shape == decoded.shape
    tolerance = 40 if "jpeg" in name or "webp" in name else 2  # lossy codecs: decoder rounding
    assert np.abs(seen.astype(int) - decoded.astype(int)).mean() < tolerance / 4
    assert np.abs(seen.astype(int) - decoded.astype(int)).max() <= max(tolerance, 2) * 3


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((30, 40), 40000, np.uint16)).save(path)
    from painting_ml.results.mosaics import thumbnail

    value = thumbnail(str(path), 16).getpixel((5, 5))
    assert value == (156, 156, 156)  # 40000 / 65535 * 255, not 255 (all white)


def test_exif_orientation_is_applied_everywhere(clean_db, tmp_path):
    """TensorFlow ignores EXIF: ingest writes an upright copy and training reads that; the mosaic
    thumbnail and predict see the same upright image."""
    import tensorflow as tf

    from painting_ml.data.inputs import decode_and_resize
    from painting_ml.results.mosaics import thumbnail

    data = tmp_path / "exif"
    (data / "train").mkdir(parents=True)
    (data / "train" / "1.jpg").write_bytes(_exif_rotated())
    (data / "all_data_info.csv").write_text("artist,new_filename\nA,1.jpg\n")
    catalog.ingest(data, clean_db)
    with psycopg.connect(clean_db) as conn:
        width, height, path = conn.execute("SELECT width, height, COALESCE(reduced_path, data_root || '/' || rel_path) "
                                           "FROM paintings").fetchone()
    assert (width, height) == (20, 40)  # upright: taller than wide
    trained = tf.io.decode_image(tf.io.read_file(path), channels=3).numpy()
    assert trained.shape == (40, 20, 3)
    assert trained[2, 10, 2] > 150 and trained[37, 10, 0] > 150  # blue on top, red below
    shown = np.asarray(thumbnail(str(data / "train" / "1.jpg"), 40))
    assert shown.shape == (40, 20, 3) and shown[2, 10, 2] > 150 and shown[37, 10, 0] > 150
    assert decode_and_resize(path, 16).numpy().shape == (16, 16, 3)


def test_alpha_and_palette_are_flattened_like_the_training_decoder(tmp_path):
    import tensorflow as tf

    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 180, 0  # fully transparent red: the stored colour counts
    path = tmp_path / "clear.png"
    Image.fromarray(rgba, "RGBA").save(path)
    decoded = tf.io.decode_image(path.read_bytes(), channels=3).numpy()
    assert np.array_equal(np.asarray(images.read_rgb(path)), decoded)


@pytest.mark.unit
def test_colourless_tells_grey_pictures_from_coloured_ones(tmp_path):
    def save(name, img, **kw):
        (tmp_path / name).write_bytes(_bytes(img, **kw))
        return tmp_path / name

    noise = _noise()
    assert images.colourless(save("l.jpg", noise.convert("L"), format="JPEG"))  # a grey JPEG
    assert images.colourless(save("rgb.jpg", noise.convert("L").convert("RGB"), format="JPEG", quality=75))
    assert images.colourless(save("cmyk.jpg", noise.convert("L").convert("CMYK"), format="JPEG"))
    assert not images.colourless(save("c.jpg", noise, format="JPEG"))
    sepia = Image.merge("RGB", [noise.convert("L").point(lambda v, f=f: int(v * f)) for f in (1.0, 0.85, 0.6)])
    assert not images.colourless(save("sepia.png", sepia, format="PNG"))  # toned, not grey
    with pytest.raises(OSError):
        images.colourless(tmp_path / "missing.jpg")
