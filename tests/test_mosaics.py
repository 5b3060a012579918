import hashlib

import pytest
from PIL import Image

from painting_ml.results.mosaics import GREEN, RED, artist_slugs, render_mosaic, slugify, thumbnail

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name, slug", [
    ("Zoë Kovač", "zoe-kovac"), ("Hiroshi Ó Briain", "hiroshi-o-briain"), ("???", "artist"),
    # Letters with no decomposition are transliterated, not dropped.
    ("Søren Weiß", "soren-weiss"), ("Łukasz Ærø", "lukasz-aero"), ("葛飾北斎", "geshibeizhai"),
    ("Ελληνικός", "ellinikos"), ("Zoe\u0308 Kovac\u030c", "zoe-kovac"),  # macOS NFD file names
])
def test_slugify_transliterates(name, slug):
    assert slugify(name) == slug


def test_artist_slugs_never_collide():
    names = ["Søren Weiß", "Soren Weiss", "soren weiss", "Sören Weiss", "Ελληνικός", "Ellinikos"]
    slugs = artist_slugs(names)
    assert len(set(slugs.values())) == len(names)
    # The first spelling keeps the plain slug; the others get a suffix from their own spelling.
    assert slugs["Søren Weiß"] == "soren-weiss" and slugs["Ελληνικός"] == "ellinikos"
    assert slugs["Soren Weiss"].startswith("soren-weiss-") and slugs["Ellinikos"].startswith("ellinikos-")
    # A suffixed slug never takes another artist's plain one, whatever the order.
    clash = artist_slugs(["Ann", "ann", f"ann-{hashlib.sha1(b'ann').hexdigest()[:6]}"])
    assert len(set(clash.values())) == 3


def test_thumbnail_keeps_aspect_and_converts_modes(tmp_path):
    Image.new("CMYK", (200, 100)).save(tmp_path / "c.jpg")
    t = thumbnail(str(tmp_path / "c.jpg"), 50)
    assert t.mode == "RGB" and t.size == (50, 25)


def test_mosaic_grid_and_borders(tmp_path):
    Image.new("RGB", (60, 40), "blue").save(tmp_path / "a.jpg")
    tiles = [{"path": str(tmp_path / "a.jpg"), "correct": k % 2 == 0, "caption": "" if k % 2 == 0 else "really X"}
             for k in range(5)]
    img = render_mosaic("Predicted as A", tiles, thumb=40, columns=3)
    assert img.size == (6 + 3 * (40 + 6 + 6), 22 + 6 + 2 * (40 + 6 + 12 + 6))
    # Top-left pixel of each tile's border: green for correct, red for wrong.
    assert img.getpixel((6, 28)) == GREEN
    assert img.getpixel((6 + 52, 28)) == RED
    r, g, b = img.getpixel((6 + 3 + 20, 28 + 3 + 20))  # JPEG: blue, give or take a level
    assert r < 5 and g < 5 and b > 250
