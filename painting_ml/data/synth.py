"""Generate a painting set in the Kaggle "Painter by Numbers" layout.

Each synthetic artist paints with a recognisable procedural style — a palette, a stroke direction
and length, a stroke width and a background texture scale — so a CNN can learn who painted what.
Artists share a *style* (movement) and each painting has a *genre* that changes its composition, so
both are usable labels too. A few artists appear only in ``test/`` (``artist_group=test_only``), a
few files are deliberately unreadable (zero bytes, truncated, garbage), one CSV row points at a
missing file, and some images are grayscale or CMYK, as in the real set. On request a fraction of
the labels is wrong on purpose (``mislabel``): the CSVs name another artist than the one whose
style painted the picture, and ``mislabelled.csv`` records the truth (ingest reads only the Kaggle
CSVs, so it never sees it).

Output (``out``): ``all_data_info.csv``, ``train_info.csv``, ``train/<n>.jpg``, ``test/<n>.jpg``,
and ``mislabelled.csv`` when labels were flipped. The same arguments always produce the same bytes.
"""

from __future__ import annotations

import colorsys
import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from painting_ml.core.errors import ConfigError

ALL_DATA_COLUMNS = [
    "artist", "date", "genre", "pixelsx", "pixelsy", "size_bytes", "source", "style", "title",
    "artist_group", "in_train", "new_filename",
]
TRAIN_INFO_COLUMNS = ["filename", "artist", "title", "style", "genre", "date"]
MISLABELLED_CSV = "mislabelled.csv"
MISLABELLED_COLUMNS = ["filename", "true_artist", "catalog_artist"]
MislabelKind = Literal["uniform", "confusable"]
MISLABEL_KINDS: tuple[MislabelKind, ...] = ("uniform", "confusable")

STYLES = ["Impressionism", "Expressionism", "Cubism", "Romanticism", "Baroque"]
GENRES = ["portrait", "landscape", "still life", "abstract"]
_FIRST = ["Zoë", "Søren", "Éloïse", "Hiroshi", "Ana María", "Jürgen", "Łucja", "Ivan", "Aoife",
          "Mateo", "Ingrid", "Çelik", "Nadia", "Pierre-Auguste", "Olga", "Tomás"]
_LAST = ["Kovač", "Ålund", "Marchand", "Tanaka", "Peña", "Weiß", "Nowak", "Šiškin", "O'Brien",
         "da Silva", "Berg", "Yılmaz", "Haddad", "Renoir-Duval", "Petrova", "Ó Briain"]
_TITLE_WORDS = ["Light", "Harbour", "Morning", "Mother", "Garden", "Storm", "Pears", "Bridge",
                "Dancer", "Window", "Field", "Night"]


@dataclass(frozen=True)
class ArtistStyle:
    name: str
    style: str
    palette: NDArray[np.uint8]  # (k, 3)
    angle: float              # mean stroke direction, radians
    angle_jitter: float
    stroke_len: float         # fraction of the image diagonal
    stroke_width: float       # fraction of the short side
    texture_scale: int        # background noise grid cells
    density: float            # strokes per 1000 px^2


def artist_names(n: int) -> list[str]:
    """``n`` distinct, partly non-ASCII artist names (deterministic)."""
    names: list[str] = []
    for i in range(n):
        first = _FIRST[i % len(_FIRST)]
        last = _LAST[(i * 5 + i // len(_FIRST)) % len(_LAST)]
        suffix = "" if i < len(_FIRST) else f" {i // len(_FIRST) + 1}"
        names.append(f"{first} {last}{suffix}")
    return names


def partner(i: int, n: int) -> int:
    """The designated partner of artist ``i`` among the first ``n``: pairs (0, 1), (2, 3), …; the
    odd one out when ``n`` is odd is paired with the artist before it."""
    return i ^ 1 if (i ^ 1) < n else i - 1


def make_styles(n: int, rng: np.random.Generator, paired: int = 0) -> list[ArtistStyle]:
    """One distinct style per artist: hues spread around the colour wheel, angles spread too.

    Args:
        n: artists.
        rng: the generator every random choice comes from.
        paired: the first ``paired`` artists come in look-alike pairs (see :func:`partner`): the
            second of a pair paints in its partner's movement, with a hue 0.06 of the wheel away
            and strokes 0.5 rad turned — hard to tell apart, still learnable.
    """
    names = artist_names(n)
    styles: list[ArtistStyle] = []
    hue_offset = rng.random()
    for i, name in enumerate(names):
        lead = partner(i, paired) if i < paired and i % 2 else i
        movement = STYLES[lead % len(STYLES)]
        base_hue = (hue_offset + lead / n + (0.06 if lead != i else 0.0)) % 1.0
        angle = math.pi * ((lead * 0.381966) % 1.0) + (0.5 if lead != i else 0.0)
        palette: list[list[int]] = []
        for k in range(4):
            h = (base_hue + rng.uniform(-0.04, 0.04) + (0.5 if k == 3 else 0.0)) % 1.0
            s = rng.uniform(0.45, 1.0)
            v = rng.uniform(0.35, 1.0)
            palette.append([int(c * 255) for c in colorsys.hsv_to_rgb(h, s, v)])
        # The movement sets stroke length and texture; the artist varies it.
        m = STYLES.index(movement)
        styles.append(
            ArtistStyle(
                name=name,
                style=movement,
                palette=np.array(palette, dtype=np.uint8),
                angle=angle,
                angle_jitter=rng.uniform(0.05, 0.35),
                stroke_len=[0.08, 0.25, 0.45, 0.15, 0.6][m] * rng.uniform(0.8, 1.2),
                stroke_width=[0.02, 0.05, 0.09, 0.03, 0.015][m] * rng.uniform(0.8, 1.2),
                texture_scale=[3, 6, 12, 24, 48][m],
                density=rng.uniform(0.6, 1.4),
            )
        )
    return styles


def paint(style: ArtistStyle, genre: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Paint one RGB image in ``style`` with a ``genre``-specific composition."""
    # Background: two palette colours blended along a low-frequency noise field.
    grid = rng.random((style.texture_scale + 1, style.texture_scale + 1)).astype(np.float32)
    noise = np.asarray(
        Image.fromarray((grid * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC),
        dtype=np.float32,
    )[..., None] / 255.0
    c0, c1 = style.palette[0].astype(np.float32), style.palette[1].astype(np.float32)
    bg = (c0 * (1 - noise) + c1 * noise).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(bg, "RGB")
    draw = ImageDraw.Draw(img)

    short = min(width, height)
    diag = math.hypot(width, height)
    # Composition by genre.
    if genre == "portrait":
        cx, cy = width / 2, height * 0.45
        r = short * 0.28
        draw.ellipse([cx - r * 0.8, cy - r, cx + r * 0.8, cy + r], fill=tuple(int(v) for v in style.palette[2]))
    elif genre == "landscape":
        horizon = int(height * rng.uniform(0.5, 0.7))
        draw.rectangle([0, horizon, width, height], fill=tuple(int(v) for v in style.palette[2]))
    elif genre == "still life":
        for _ in range(3):
            r = short * rng.uniform(0.08, 0.16)
            cx, cy = rng.uniform(r, width - r), rng.uniform(height * 0.5, height - r)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in style.palette[3]))
    # "abstract": strokes only.

    n_strokes = max(8, int(style.density * width * height / 1000 * 2))
    length = style.stroke_len * diag
    lw = max(1, int(style.stroke_width * short))
    for _ in range(n_strokes):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        a = style.angle + rng.normal(0, style.angle_jitter)
        ln = length * rng.uniform(0.5, 1.5)
        dx, dy = math.cos(a) * ln / 2, math.sin(a) * ln / 2
        base = style.palette[rng.integers(0, len(style.palette))].astype(int)
        color = tuple(int(c) for c in np.clip(base + rng.integers(-20, 21, 3), 0, 255))
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=color, width=lw)
    return img


def _title(rng: np.random.Generator, i: int) -> str:
    w1, w2 = rng.choice(_TITLE_WORDS, 2, replace=False)
    forms = [
        f"{w1} and {w2}",
        f'Study of "{w1}", No. {i % 7 + 1}',      # quotes and a comma
        f"{w1}, {w2.lower()} at dusk",
        f"L'{w1.lower()} — étude",
        "",                                         # missing title
    ]
    return forms[int(rng.integers(0, len(forms)))]


def _date(rng: np.random.Generator) -> str:
    year = int(rng.integers(1600, 1990))
    return [str(year), f"c.{year}", "", f"{year}-{year + 2}"][int(rng.integers(0, 4))]


def _encode(img: Image.Image, mode: str) -> bytes:
    buf = io.BytesIO()
    if mode == "L":
        img = img.convert("L")
    elif mode == "CMYK":
        img = img.convert("CMYK")
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def generate(
    out: Path,
    *,
    artists: int = 10,
    per_artist: int = 40,
    size: int = 96,
    seed: int = 0,
    test_only_artists: int = 2,
    broken: int = 3,
    copies: int = 0,
    mislabel: float = 0.0,
    mislabel_kind: MislabelKind = "uniform",
) -> dict[str, int]:
    """Write a synthetic dataset in the Kaggle layout.

    Args:
        out: destination folder (created; existing generated files are overwritten).
        artists: artists that appear in train and test (``train_and_test``).
        per_artist: paintings of the smallest of those artists; others get up to 50 % more.
        size: long side of the images in pixels (aspect ratios vary from 3:4 to 4:3).
        seed: everything derives from it: same arguments, same bytes.
        test_only_artists: extra artists with paintings only in ``test/``.
        broken: files written unreadable on purpose (zero bytes, truncated, garbage); one more
            CSV row points at a file that does not exist.
        copies: extra paintings that are copies of others under a new file name and the same
            artist, as real catalogs hold them: in turn the same bytes, a re-encoded copy at 1.5x
            the size and a grey one.
        mislabel: the share of the ``train_and_test`` artists' paintings whose CSV rows name a
            wrong artist (``round(mislabel * paintings)`` of them; never a broken file, a copy or
            a copied painting, so every wrong label is one readable picture). The truth goes to
            ``mislabelled.csv`` (``filename, true_artist, catalog_artist``).
        mislabel_kind: ``uniform``: the wrong artist is another ``train_and_test`` artist drawn at
            random; ``confusable``: it is the painter's look-alike partner (the artists are
            generated in look-alike pairs, see :func:`make_styles`).

    Returns:
        Counts: ``paintings`` (CSV rows), ``images`` (files written), ``broken``, ``missing``,
        ``copies``, ``mislabelled``.
    """
    if artists < 2 or per_artist < 3 or size < 16 or seed < 0 or test_only_artists < 0 or broken < 0:
        raise ConfigError(
            "synth needs --artists >= 2, --per-artist >= 3, --size >= 16 and non-negative "
            f"--seed/--test-only/--broken (got artists={artists}, per_artist={per_artist}, size={size})"
        )
    if not 0.0 <= mislabel <= 0.5 or mislabel_kind not in MISLABEL_KINDS:
        raise ConfigError(f"synth needs 0 <= --mislabel <= 0.5 and --mislabel-kind one of {', '.join(MISLABEL_KINDS)} "
                          f"(got mislabel={mislabel}, mislabel_kind={mislabel_kind!r})")
    rng = np.random.default_rng(seed)
    styles = make_styles(artists + test_only_artists, rng, paired=artists if mislabel_kind == "confusable" else 0)
    out = Path(out)
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "test").mkdir(parents=True, exist_ok=True)

    counts = [per_artist + (i * 7 % 5) * per_artist // 8 for i in range(artists)]
    counts += [max(3, per_artist // 2)] * test_only_artists
    total = sum(counts)
    numbers = rng.choice(np.arange(1, 110_000), size=total, replace=False)

    rows: list[dict[str, object]] = []
    n = 0
    from painting_ml.core.progress import progress

    for a, (style, count) in progress(list(enumerate(zip(styles, counts, strict=True))), "synth: artists"):
        test_only = a >= artists
        for j in range(count):
            img_rng = np.random.default_rng([seed, a, j])
            genre = GENRES[int(img_rng.integers(0, len(GENRES)))]
            ratio = img_rng.uniform(0.75, 1.333)
            w, h = (size, int(size / ratio)) if ratio >= 1 else (int(size * ratio), size)
            img = paint(style, genre, w, h, img_rng)
            mode = "RGB"
            if (n % 23) == 5:
                mode = "L"
            elif (n % 31) == 7:
                mode = "CMYK"
            data = _encode(img, mode)
            in_train = (not test_only) and (j % 5 != 4)
            filename = f"{int(numbers[n])}.jpg"
            (out / ("train" if in_train else "test") / filename).write_bytes(data)
            rows.append({
                "artist": style.name, "date": _date(img_rng), "genre": genre,
                "pixelsx": w, "pixelsy": h, "size_bytes": len(data), "source": "synth",
                "style": style.style, "title": _title(img_rng, j),
                "artist_group": "test_only" if test_only else "train_and_test",
                "in_train": in_train, "new_filename": filename,
            })
            n += 1

    # Deliberately unusable files: spread over artists, never the first painting of any.
    damaged = 0
    for k in range(broken):
        row = rows[(k * 37 + 11) % len(rows)]
        path = out / ("train" if row["in_train"] else "test") / str(row["new_filename"])
        data = path.read_bytes()
        path.write_bytes([b"", data[: len(data) // 3], b"not a jpeg at all"][k % 3])
        damaged += 1
    damaged_rows = {(d * 37 + 11) % len(rows) for d in range(broken)}
    usable = [r for k, r in enumerate(rows) if r["artist_group"] == "train_and_test" and k not in damaged_rows]
    copied: set[object] = set()
    for c in range(copies):
        row = usable[(c * 53 + 3) % len(usable)]
        copied.add(row["new_filename"])
        folder = out / ("train" if row["in_train"] else "test")
        data = (folder / str(row["new_filename"])).read_bytes()
        if c % 3:
            with Image.open(io.BytesIO(data)) as im:
                img = im.convert("RGB")
            img = img.resize((img.width * 3 // 2, img.height * 3 // 2)) if c % 3 == 1 else img.convert("L")
            data = _encode(img.convert("RGB"), "RGB" if c % 3 == 1 else "L")
        filename = f"{int(numbers.max()) + 2 + c}.jpg"
        (folder / filename).write_bytes(data)
        rows.append({**row, "new_filename": filename, "size_bytes": len(data), "title": f"{row['title']} (copy)"})
    missing_row = dict(rows[len(rows) // 2])
    missing_row["new_filename"] = f"{int(numbers.max()) + 1}.jpg"  # never written
    rows.append(missing_row)
    flips = _mislabel(rows[:total], [s.name for s in styles[:artists]], damaged_rows, copied, mislabel,
                      mislabel_kind, seed)
    _write_mislabelled(out / MISLABELLED_CSV, flips)

    with open(out / "all_data_info.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=ALL_DATA_COLUMNS, quoting=csv.QUOTE_MINIMAL)
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "in_train": "True" if r["in_train"] else "False"})
    with open(out / "train_info.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=TRAIN_INFO_COLUMNS)
        writer.writeheader()
        for r in rows:
            if r["in_train"]:
                writer.writerow({"filename": r["new_filename"], **{c: r[c] for c in TRAIN_INFO_COLUMNS[1:]}})
    return {"paintings": len(rows), "images": total + copies, "broken": damaged, "missing": 1, "copies": copies,
            "mislabelled": len(flips)}


def _mislabel(rows: list[dict[str, object]], names: list[str], damaged: set[int], copied: set[object],
              share: float, kind: MislabelKind, seed: int) -> list[dict[str, str]]:
    """Give ``round(share * n)`` of the ``n`` train_and_test paintings in ``rows`` a wrong artist
    (in place); the flips as ``mislabelled.csv`` rows, in CSV order."""
    selected = [k for k, r in enumerate(rows) if r["artist_group"] == "train_and_test"]
    eligible = [k for k in selected if k not in damaged and rows[k]["new_filename"] not in copied]
    n = round(share * len(selected))
    if n > len(eligible):
        raise ConfigError(f"synth: --mislabel {share} asks for {n} wrong labels but only {len(eligible)} paintings "
                          "are eligible (readable, not copies); lower --mislabel")
    rng = np.random.default_rng([seed, 0x6D15])  # its own stream: the images do not change with the share
    flips: list[dict[str, str]] = []
    for k in sorted(int(k) for k in rng.choice(eligible, size=n, replace=False)):
        true = str(rows[k]["artist"])
        i = names.index(true)
        if kind == "confusable":
            wrong = names[partner(i, len(names))]
        else:
            wrong = names[(i + 1 + int(rng.integers(0, len(names) - 1))) % len(names)]
        rows[k]["artist"] = wrong
        flips.append({"filename": str(rows[k]["new_filename"]), "true_artist": true, "catalog_artist": wrong})
    return flips


def _write_mislabelled(path: Path, flips: list[dict[str, str]]) -> None:
    """The truth about the wrong labels; no file (and no stale one) when there are none."""
    if not flips:
        path.unlink(missing_ok=True)
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MISLABELLED_COLUMNS)
        writer.writeheader()
        writer.writerows(flips)


def read_mislabelled(data_dir: Path | str) -> dict[str, dict[str, str]]:
    """The planted wrong labels of a generated folder by file name (empty when it has none)."""
    path = Path(data_dir) / MISLABELLED_CSV
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {r["filename"]: r for r in csv.DictReader(f)}
