from PIL import Image

from painting_ml.results.mosaics import GREEN, RED, render_mosaic, slugify, thumbnail


def test_slugify_non_ascii():
    assert slugify("Zoë Kovač") == "zoe-kovac"
    assert slugify("Hiroshi Ó Briain") == "hiroshi-o-briain"
    assert slugify("???") == "artist"


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
