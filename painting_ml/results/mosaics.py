"""Per-artist mosaics of a run's test predictions, and the artifact registry they are recorded in.

For each artist two PNGs: the test paintings the model attributed to that artist, and that
artist's real test paintings. Each thumbnail keeps its aspect ratio and gets a green (correct) or
red (wrong) border; wrong ones name the true artist (or, in the real mosaic, the predicted one).
Files are written atomically and registered in ``artifacts``; re-rendering replaces both file and
row.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import unicodedata
from pathlib import Path
from typing import Any, TypeAlias

from PIL import Image, ImageDraw, ImageFont

from painting_ml.core import db
from painting_ml.core.artifacts import record_artifact, run_folder
from painting_ml.core.files import write_atomic
from painting_ml.results.fonts import displayable, font_path

GREEN, RED = (46, 160, 67), (210, 40, 40)

#: What :func:`ImageFont.truetype` or, without the font file, :func:`ImageFont.load_default` gives.
Font: TypeAlias = ImageFont.FreeTypeFont | ImageFont.ImageFont


def slugify(text: str) -> str:
    """ASCII file-name-safe form of an artist name, transliterated (``Zoë Kovač`` -> ``zoe-kovac``,
    ``Søren Weiß`` -> ``soren-weiss``, ``葛飾北斎`` -> ``geshibeizhai``)."""
    from anyascii import anyascii

    ascii_text = anyascii(unicodedata.normalize("NFC", text))
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "artist"


def thumbnail(path: str, size: int) -> Image.Image:
    """An RGB thumbnail fitting in ``size``×``size``, aspect ratio kept, converted as training's
    decoder sees the file (EXIF orientation, 16-bit samples scaled, alpha dropped). A file that
    is gone or unreadable since the run becomes a gray tile with a cross, not a failed report."""
    from painting_ml.data.images import read_rgb

    try:
        return read_rgb(path, size)
    except (OSError, ValueError, SyntaxError):
        tile = Image.new("RGB", (size, size), (200, 200, 200))
        draw = ImageDraw.Draw(tile)
        draw.line([(0, 0), (size - 1, size - 1)], fill=(120, 120, 120), width=2)
        draw.line([(0, size - 1), (size - 1, 0)], fill=(120, 120, 120), width=2)
        return tile


@functools.lru_cache(maxsize=4)
def _font(size: int) -> Font:
    """DejaVu Sans (shipped with matplotlib); what it lacks is transliterated by
    :func:`~painting_ml.results.fonts.displayable` before drawing."""
    path = font_path()
    return ImageFont.truetype(str(path), size) if path.is_file() else ImageFont.load_default(size=size)


def fit_text(text: str, font: Font, width: int) -> str:
    """``text`` in glyphs the font has (see :func:`displayable`), shortened with an ellipsis until
    it fits in ``width`` pixels."""
    text = displayable(text)
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def render_mosaic(title: str, tiles: list[dict[str, Any]], thumb: int = 96, columns: int = 6) -> Image.Image:
    """Compose ``tiles`` (``path``, ``correct``, ``caption``) into one titled grid image."""
    font, small = _font(13), _font(10)
    title = displayable(title)
    pad, border, caption_h, title_h = 6, 3, 12, 22
    columns = max(1, min(columns, len(tiles) or 1))
    rows = max(1, math.ceil(len(tiles) / columns))
    cell_w, cell_h = thumb + 2 * border + pad, thumb + 2 * border + caption_h + pad
    title_w = int(font.getlength(title)) + 2 * pad
    canvas = Image.new("RGB", (max(title_w, pad + columns * cell_w), title_h + pad + rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 4), title, fill="black", font=font)
    if not tiles:
        draw.text((pad, title_h + pad), "(no test paintings)", fill="gray", font=font)
    for k, tile in enumerate(tiles):
        x0 = pad + (k % columns) * cell_w
        y0 = title_h + pad + (k // columns) * cell_h
        img = thumbnail(tile["path"], thumb)
        color = GREEN if tile["correct"] else RED
        draw.rectangle([x0, y0, x0 + thumb + 2 * border - 1, y0 + thumb + 2 * border - 1], fill=color)
        canvas.paste(img, (x0 + border + (thumb - img.width) // 2, y0 + border + (thumb - img.height) // 2))
        if tile.get("caption"):
            draw.text((x0, y0 + thumb + 2 * border), fit_text(tile["caption"], small, thumb + 2 * border + pad),
                      fill=color, font=small)
    return canvas


def artist_slugs(artists: list[str]) -> dict[str, str]:
    """File-name slugs, one per artist and never shared: the first name (in ``artists``' order)
    that transliterates to a slug keeps it; another name folding to the same slug gets a suffix
    from the hash of its exact spelling, lengthened until it is taken by no other artist."""
    out: dict[str, str] = {}
    for artist in artists:
        out.setdefault(artist, slugify(artist))
    owner: dict[str, str] = {}
    for artist, slug in out.items():
        owner.setdefault(slug, artist)
    taken = set(owner)
    for artist, slug in out.items():
        if owner[slug] == artist:
            continue
        digest = hashlib.sha1(artist.encode()).hexdigest()
        size = 6
        while f"{slug}-{digest[:size]}" in taken:
            size += 2
        out[artist] = f"{slug}-{digest[:size]}"
        taken.add(out[artist])
    return out


def mosaic_tiles(preds: list[dict[str, Any]], artist: str, kind: str,
                 max_tiles: int) -> tuple[list[dict[str, Any]], str]:
    """The tiles and title of one mosaic.

    ``predicted``: the test paintings the model attributed to ``artist`` (wrong ones name the true
    artist; the figure is the precision). ``real``: ``artist``'s own test paintings (wrong ones name
    what the model said; the figure is the artist's accuracy).
    """
    if kind == "predicted":
        mine = [p for p in preds if p["predicted_artist"] == artist]
        ok = [p["true_artist"] == artist for p in mine]
        captions = ["" if good else f"really {p['true_artist']}" for p, good in zip(mine, ok, strict=True)]
        rate = f"{sum(ok) / len(mine):.0%} correct" if mine else "none"
        title = f"Predicted as {artist}: {len(mine)} test paintings, {rate}"
    else:
        mine = [p for p in preds if p["true_artist"] == artist]
        ok = [p["predicted_artist"] == artist for p in mine]
        captions = ["" if good else f"as {p['predicted_artist']}" for p, good in zip(mine, ok, strict=True)]
        rate = f"accuracy {sum(ok) / len(mine):.0%}" if mine else "no test paintings"
        title = f"Real paintings by {artist}: {len(mine)} in test, {rate}"
    tiles = [{"path": p["path"], "correct": good, "caption": c}
             for p, good, c in zip(mine, ok, captions, strict=True)]
    return tiles[:max_tiles], title


def render_run_mosaics(run_id: int, url: str | None = None, thumb: int = 96, columns: int = 6,
                       max_tiles: int = 36) -> Path:
    """Write ``predicted_<artist>.png`` and ``real_<artist>.png`` per artist of the run, record
    them in ``artifacts`` and return their folder."""
    with db.connect(url) as conn:
        run = db.fetch_one(conn, db.sql("runs", "get_run"), {"id": run_id})
        if run is None:
            raise LookupError(f"run {run_id} does not exist")
        run_dir = run_folder(run["run_dir"])
        version = db.fetch_one(conn, db.sql("datasets", "get_version"), {"id": run["dataset_version_id"]},
                               required=True)
        artists = list(version["artists"])
        preds = db.fetch_dicts(conn, db.sql("runs", "predictions_with_paths"), {"id": run_id})
    out = run_dir / "mosaics"
    out.mkdir(parents=True, exist_ok=True)
    from painting_ml.core.progress import progress

    slugs = artist_slugs(artists)
    written: list[tuple[str, Path]] = []
    for artist in progress(artists, "mosaics"):
        for kind in ("predicted", "real"):
            tiles, title = mosaic_tiles(preds, artist, kind, max_tiles)
            path = out / f"{kind}_{slugs[artist]}.png"
            write_atomic(render_mosaic(title, tiles, thumb, columns), path, format="PNG")
            written.append((f"mosaic_{kind}", path))
    with db.connect(url) as conn:  # one connection for the registry, not one per file
        for kind, path in written:
            record_artifact(conn, run_id, kind, path)
    return out
