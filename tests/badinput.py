"""The bad-input corpus: a generator of every quirk ingest must survive, with the outcome each
one must have. Nothing binary is checked in; the corpus is written into a temp folder."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image

COLUMNS = ["artist", "date", "genre", "pixelsx", "pixelsy", "size_bytes", "source", "style", "title",
           "artist_group", "in_train", "new_filename"]


def _jpeg(path: Path, color, mode="RGB", size=(40, 30)) -> None:
    Image.new(mode, size, color).save(path, format="JPEG" if mode in ("RGB", "L", "CMYK") else None)


def write_row_corpus(root: Path) -> dict[str, str | None]:
    """A Kaggle-layout folder in which every row-level quirk appears once beside good rows.

    Returns ``{new_filename: expected reject reason, or None for a row that must load}``.
    """
    train, test = root / "train", root / "test"
    train.mkdir(parents=True)
    test.mkdir()
    rows, expected = [], {}

    def row(filename, artist="Ann Good", title="t", style="Baroque", genre="portrait", reason=None, **extra):
        rows.append({**{c: "" for c in COLUMNS}, "artist": artist, "title": title, "style": style, "genre": genre,
                     "new_filename": filename, "in_train": "True", **extra})
        if filename not in expected:
            expected[filename] = reason

    # Good rows, three artists, in every image flavour a real dump has.
    for k in range(4):
        for a, (artist, color) in enumerate((("Ann Good", (200, 30, 30)), ("Bob Fine", (30, 200, 30)),
                                             ("Zoë Ünïcode", (30, 30, 200)))):
            name = f"{100 + k}{a}.jpg"
            _jpeg(train / name, color)
            row(name, artist=artist)
    _jpeg(train / "500.jpg", (50,), mode="L")
    row("500.jpg", title='A "quoted", comma, title')                          # grayscale, quotes and commas
    Image.new("CMYK", (30, 40), (0, 100, 200, 0)).save(train / "501.jpg", format="JPEG")
    row("501.jpg", title="multi\nline title")                                 # CMYK, newline in a field
    Image.new("P", (20, 20)).save(train / "502.jpg", format="PNG")
    row("502.jpg", style="", genre="")                                        # PNG behind .jpg, missing fields
    Image.new("RGBA", (20, 20), (1, 2, 3, 100)).save(test / "503.png")
    row("503.png", date="", source="")                                        # RGBA PNG in test/
    # Bad rows: each must become one reject with its reason.
    row("600.jpg", reason="missing_file")                                      # listed, not on disk
    (train / "601.jpg").write_bytes(b"")
    row("601.jpg", reason="empty_file")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(buf, format="JPEG")
    (train / "602.jpg").write_bytes(buf.getvalue()[:200])
    row("602.jpg", reason="undecodable")                                       # truncated JPEG
    (train / "603.jpg").write_text("this is not an image")
    row("603.jpg", reason="undecodable")
    (train / "604.jpg").mkdir()
    row("604.jpg", reason="not_a_file")                                        # a directory named like an image
    row("../../etc/passwd", reason="unsafe_path")
    row("/etc/hosts", reason="unsafe_path")
    row("sub/605.jpg", reason="unsafe_path")
    _jpeg(train / "606.jpg", (1, 1, 1))
    row("606.jpg", artist="", reason="missing_artist")
    row("1000.jpg", artist="Someone Else", reason="duplicate_row")  # same file listed twice
    with open(root / "all_data_info.csv", "w", newline="", encoding="utf-8-sig") as f:  # with a BOM
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return expected


# CSV-level cases: (name, file text or None for "no CSV", expected message fragment)
CSV_CASES = [
    ("empty file", "", "is empty"),
    ("header only", ",".join(COLUMNS) + "\n", "has a header but no data rows"),
    ("missing columns", "artist,title\nAnn,x\n", "lacks column(s) new_filename"),
    ("semicolon delimiter", "artist;new_filename\nAnn;1.jpg\n", "looks ';'-delimited"),
    ("tab delimiter", "artist\tnew_filename\nAnn\t1.jpg\n", "looks '\\t'-delimited"),
    ("not UTF-8", None, "is not a valid UTF-8 CSV"),
    ("no CSV at all", "<none>", "no all_data_info.csv or train_info.csv"),
]


def write_csv_case(root: Path, text: str | None) -> Path:
    root.mkdir(parents=True)
    if text == "<none>":
        return root
    path = root / "all_data_info.csv"
    if text is None:
        path.write_bytes(b"artist,new_filename\n\xff\xfe\xfa,1.jpg\n")
    else:
        path.write_text(text, encoding="utf-8")
    return root
