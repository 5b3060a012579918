"""The tf.data input path: every image mode decodes to (S, S, 3) uint8, geometry of crop/pad,
DCT-scaled JPEG decoding, caches."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from painting_ml.data.inputs import decode_and_resize, make_dataset  # noqa: E402

pytestmark = pytest.mark.unit


def _save(tmp_path, name, img, fmt):
    path = tmp_path / name
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    path.write_bytes(buf.getvalue())
    return str(path)


@pytest.mark.parametrize("mode,fmt,name", [
    ("RGB", "JPEG", "rgb.jpg"), ("L", "JPEG", "gray.jpg"), ("CMYK", "JPEG", "cmyk.jpg"),
    ("P", "PNG", "palette.png"), ("RGBA", "PNG", "rgba.png"), ("RGB", "PNG", "png_bytes_behind.jpg"),
])
def test_every_mode_decodes_to_rgb(tmp_path, mode, fmt, name):
    img = Image.new("RGB", (60, 40), (200, 30, 30)).convert(mode)
    out = decode_and_resize(_save(tmp_path, name, img, fmt), 32).numpy()
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    if mode in ("RGB", "P", "RGBA"):
        # the mean of the centre (P is dithered from the web palette: single pixels vary by ±51)
        centre = out[8:24, 8:24].reshape(-1, 3).mean(axis=0)
        assert abs(centre[0] - 200) < 12 and centre[1] < 45


def test_crop_and_pad_keep_aspect(tmp_path):
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :40] = 255  # left half white
    path = _save(tmp_path, "wide.png", Image.fromarray(img), "PNG")
    crop = decode_and_resize(path, 20, "crop").numpy()
    pad = decode_and_resize(path, 20, "pad").numpy()
    # crop: short side 40 -> 20, width 80 -> 40, centre 20 columns: left 10 white, right 10 black
    assert crop[10, 2].min() > 240 and crop[10, 17].max() < 15
    # pad: long side 80 -> 20, height 40 -> 10, padded with 5 black rows above and below
    assert pad[0].max() == 0 and pad[19].max() == 0 and pad[10, 2].min() > 240


def test_large_jpeg_uses_dct_scaling_and_matches_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    base = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    big = Image.fromarray(base).resize((1024, 768), Image.BICUBIC)
    path = _save(tmp_path, "big.jpg", big, "JPEG")
    fast = decode_and_resize(path, 64).numpy().astype(int)
    ref = np.asarray(big.resize((85, 64), Image.BOX))[:, 10:74].astype(int)
    assert fast.shape == (64, 64, 3)
    assert np.abs(fast - ref).mean() < 6


@pytest.mark.parametrize("fmt,size", [("PNG", (90, 60)), ("JPEG", (512, 384))])
def test_shrink_under_2x_is_bilinear_and_close_to_box(tmp_path, fmt, size):
    # 60 -> 32 px (PNG, no DCT scaling) and 384 -> 224 px (JPEG at full size: 1/2 would be too
    # small) shrink by less than 2x, where the plain bilinear resize is used: its pixels must stay
    # close to an area average (PIL's BOX filter), with the same centre crop.
    rng = np.random.default_rng(1)
    img = Image.fromarray((rng.random((12, 12, 3)) * 255).astype(np.uint8)).resize(size, Image.BICUBIC)
    target = 32 if fmt == "PNG" else 224
    out = decode_and_resize(_save(tmp_path, f"img.{fmt.lower()}", img, fmt), target).numpy()
    w = round(size[0] * target / size[1])
    ref = np.asarray(img.resize((w, target), Image.BOX))[:, (w - target) // 2:(w - target) // 2 + target]
    assert out.shape == (target, target, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - ref.astype(int)).mean() < 4


def test_make_dataset_batches_and_disk_cache(tmp_path):
    paths = [_save(tmp_path, f"{i}.jpg", Image.new("RGB", (30 + i, 30), (i * 20, 0, 0)), "JPEG") for i in range(5)]
    ds = make_dataset(paths, list(range(5)), image_size=16, batch_size=2, shuffle=False, seed=0,
                      cache="disk", cache_dir=tmp_path / "cache")
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    assert batches[0][0].dtype == tf.uint8 and [int(y) for b in batches for y in b[1]] == [0, 1, 2, 3, 4]
    assert any((tmp_path / "cache").iterdir())
    again = list(ds)  # second epoch reads the cache
    assert np.array_equal(again[1][0].numpy(), batches[1][0].numpy())


def test_bad_options():
    with pytest.raises(ValueError, match="unknown cache mode"):
        make_dataset(["a"], [0], image_size=8, batch_size=1, shuffle=False, seed=0, cache="ram")
    with pytest.raises(ValueError, match="needs a cache_dir"):
        make_dataset(["a"], [0], image_size=8, batch_size=1, shuffle=False, seed=0, cache="disk")


def test_grey_dataset_drops_the_colours_and_keeps_the_luma(tmp_path):
    colour = _save(tmp_path, "c.png", Image.new("RGB", (16, 16), (200, 30, 30)), "PNG")
    grey = _save(tmp_path, "g.png", Image.new("L", (16, 16), 90), "PNG")
    kw = {"image_size": 16, "batch_size": 2, "shuffle": False, "seed": 0, "cache": "none"}
    plain = next(iter(make_dataset([colour, grey], None, **kw))).numpy()
    greyed = next(iter(make_dataset([colour, grey], None, grey=True, **kw))).numpy()
    assert (greyed[..., 0] == greyed[..., 1]).all() and (greyed[..., 1] == greyed[..., 2]).all()
    luma = 0.2989 * 200 + 0.587 * 30 + 0.114 * 30  # ITU-R 601, as tf.image.rgb_to_grayscale
    assert abs(int(greyed[0, 0, 0, 0]) - luma) <= 1
    assert np.array_equal(greyed[1], plain[1])  # a grey painting is unchanged
