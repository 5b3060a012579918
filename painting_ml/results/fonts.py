"""Text in mosaics and plots that never renders as boxes.

Both draw with DejaVu Sans (shipped with matplotlib): it covers Latin, Greek, Cyrillic, Armenian,
Georgian, Arabic, Hebrew and more, but not CJK, Thai, Devanagari and other scripts — no PyPI
package ships a font for those. Each character the font lacks is therefore shown transliterated
(``anyascii``: ``葛飾北斎`` → ``GeShiBeiZhai``, ``김홍도`` → ``GimHongDo``), so an artist's name is always
readable and distinct instead of a row of identical boxes.
"""

from __future__ import annotations

import functools
from pathlib import Path


@functools.lru_cache(maxsize=1)
def font_path() -> Path:
    """DejaVu Sans, the font mosaics use and matplotlib's default."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


@functools.lru_cache(maxsize=1)
def covered() -> frozenset[int]:
    """The code points DejaVu Sans has a glyph for."""
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(str(font_path())).get_charmap())


def displayable(text: str) -> str:
    """``text`` with every character the font lacks transliterated (runs of them kept together,
    so ``葛飾北斎`` reads ``GeShiBeiZhai``); characters with no transliteration are dropped."""
    from anyascii import anyascii

    have = covered()
    out: list[str] = []
    run: list[str] = []
    for ch in str(text):
        if ord(ch) in have or ch in "\n\t":
            if run:
                out.append(anyascii("".join(run)))
                run = []
            out.append(ch)
        else:
            run.append(ch)
    if run:
        out.append(anyascii("".join(run)))
    return "".join(out)
