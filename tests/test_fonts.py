"""Artist names in any script are readable in mosaics and plots: never boxes (.notdef glyphs)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from painting_ml.results import plots
from painting_ml.results.fonts import covered, displayable
from painting_ml.results.mosaics import _font, render_mosaic

pytestmark = pytest.mark.unit

NAMES = ["葛飾北斎", "김홍도", "ราชา", "राजा रवि वर्मा", "Иван Шишкин", "Ōta Zoë", "Γκρέκο", "פרידה"]


@pytest.mark.parametrize("name", NAMES)
def test_every_character_drawn_has_a_glyph(name):
    shown = displayable(name)
    assert shown.strip()
    assert all(ord(c) in covered() for c in shown), shown


def test_scripts_the_font_has_are_kept_and_the_rest_transliterated():
    assert displayable("Иван Шишкин") == "Иван Шишкин" and displayable("Ōta Zoë") == "Ōta Zoë"
    assert displayable("Katsushika Hokusai (葛飾北斎)") == "Katsushika Hokusai (GeShiBeiZhai)"
    assert not all(ord(c) in covered() for c in "葛飾北斎")  # the failure: DejaVu has no CJK glyph


def test_distinct_cjk_names_stay_distinct_in_a_mosaic(tmp_path):
    """Before, every CJK character was the same box; now the captions differ pixel for pixel."""
    font = _font(13)
    masks = [np.asarray(font.getmask(displayable(n))) for n in ("葛飾北斎", "김홍도")]
    assert masks[0].shape != masks[1].shape or not np.array_equal(*masks)
    path = tmp_path / "a.png"
    Image.new("RGB", (30, 30), "red").save(path)
    img = render_mosaic("Predicted as 葛飾北斎", [{"path": str(path), "correct": False, "caption": "really 김홍도"}])
    assert img.width > 0


def test_plots_with_cjk_names_draw_no_missing_glyph(tmp_path):
    names = ["葛飾北斎", "김홍도", "Monet"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.confusion_heatmap(names, np.eye(3, dtype=int), tmp_path / "c.png", title="葛飾北斎 vs 김홍도")
        plots.f1_bars([{"label": n, "f1": 0.5, "support": 3} for n in names], tmp_path / "f.png")
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert missing == []
    assert (tmp_path / "c.png").is_file() and (tmp_path / "f.png").is_file()
