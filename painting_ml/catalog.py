"""Ingest Painter-by-Numbers metadata and images into the painting database.

``ingest(data_dir)`` reads ``all_data_info.csv`` (or ``train_info.csv`` when that is all there is),
finds every referenced image in ``train/``, ``train_1``…``train_9`` (also Kaggle's nested
``train_1/train_1/``) and ``test/``, opens each one to record its decoded width, height and mode,
and loads the usable rows with PostgreSQL COPY into a staging table followed by a set-based
update of changed rows and insert of new ones.
Every unusable row goes to ``rejects`` with its reason; nothing is silently dropped, and running it
again on the same data changes no counts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from painting_ml import db
from painting_ml.exceptions import DataError
from painting_ml.fileio import write_atomic

log = logging.getLogger(__name__)

IMAGE_DIRS = ["train"] + [f"train_{i}" for i in range(1, 10)] + ["test"]
PAINTING_COLUMNS = [
    "filename", "artist", "title", "style", "genre", "date", "source", "artist_group", "in_train",
    "meta_width", "meta_height", "size_bytes", "data_root", "rel_path", "width", "height", "mode", "source_csv",
    "reduced_path",
]
REJECT_COLUMNS = ["source_csv", "line_no", "filename", "reason", "detail"]


@dataclass(frozen=True)
class ImageProbe:
    """What opening one image told us: either a size and mode, or why it is unusable."""

    width: int = 0
    height: int = 0
    mode: str = ""
    reason: str = ""
    detail: str = ""
    reduced_path: str | None = None


@dataclass(frozen=True)
class IngestSummary:
    source_csv: str
    rows: int
    loaded: int
    rejected: int
    paintings_total: int
    rejects_total: int

    def to_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


def index_images(data_dir: Path) -> dict[str, str]:
    """Map image file name -> path relative to ``data_dir`` across the Kaggle image folders."""
    index: dict[str, str] = {}
    for name in IMAGE_DIRS:
        for folder in (data_dir / name, data_dir / name / name):  # Kaggle nests train_1/train_1/
            if not folder.is_dir():
                continue
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.name not in index and not entry.name.startswith("."):
                        index[entry.name] = os.path.relpath(entry.path, data_dir)
    return index


def probe_image(path: Path, draft_size: int = 256, reduced_dir: Path | None = None,
                reduce_to: int = 1024) -> ImageProbe:
    """Open and fully decode ``path`` (reduced with JPEG draft mode) to prove it is usable.

    Images past PIL's decompression-bomb limit are not decoded at full size: a JPEG is opened
    with draft mode (DCT scaling, up to 1/8 per side) and, if that brings it under the limit, a
    reduced copy (long side ``reduce_to``) is written to ``reduced_dir`` for training to read;
    anything else is rejected. The limit itself is never changed.
    """
    try:
        if path.is_dir():
            return ImageProbe(reason="not_a_file", detail="path is a directory")
        if path.stat().st_size == 0:
            return ImageProbe(reason="empty_file", detail="0 bytes")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height, mode = im.width, im.height, im.mode
                im.draft("RGB", (draft_size, draft_size))  # decode at 1/2..1/8 scale: fast
                im.load()
        return ImageProbe(width=width, height=height, mode=mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return _probe_bomb(path, str(exc), reduced_dir, reduce_to)
    except UnidentifiedImageError:
        return ImageProbe(reason="undecodable", detail="not an image PIL can identify")
    except PermissionError as exc:
        return ImageProbe(reason="unreadable", detail=f"permission denied: {exc.filename}")
    except (OSError, SyntaxError, ValueError) as exc:  # truncated, broken headers
        return ImageProbe(reason="undecodable", detail=str(exc)[:200])


def _probe_bomb(path: Path, message: str, reduced_dir: Path | None, reduce_to: int) -> ImageProbe:
    """Handle an image past the decompression-bomb limit: reduce a JPEG via draft mode, or reject."""
    from PIL import JpegImagePlugin

    with open(path, "rb") as f:
        is_jpeg = f.read(3) == b"\xff\xd8\xff"
    if not is_jpeg or reduced_dir is None:
        return ImageProbe(reason="decompression_bomb", detail=message[:200] + "; only JPEGs can be loaded reduced")
    # The plugin class is used directly because Image.open refuses the file before draft() can act.
    with JpegImagePlugin.JpegImageFile(str(path)) as im:
        width, height, mode = im.width, im.height, im.mode
        # The gentlest DCT scale (1/2, 1/4, 1/8) that brings the decoded size under the limit.
        scale = next((k for k in (2, 4, 8) if (width / k) * (height / k) <= Image.MAX_IMAGE_PIXELS), 8)
        im.draft("RGB", (max(1, width // scale), max(1, height // scale)))
        if im.width * im.height > Image.MAX_IMAGE_PIXELS:
            return ImageProbe(reason="decompression_bomb",
                              detail=f"{width}x{height} is still {im.width}x{im.height} at 1/8 scale")
        im.load()
        small = im.convert("RGB")
    small.thumbnail((reduce_to, reduce_to))
    reduced_dir.mkdir(parents=True, exist_ok=True)
    dest = reduced_dir / path.name
    write_atomic(small, dest, format="JPEG", quality=92)
    return ImageProbe(width=width, height=height, mode=mode, reduced_path=str(dest),
                      detail=f"reduced from {width}x{height} with JPEG draft mode")


def _safe_name(filename: str) -> str | None:
    """Return why a CSV file name is unsafe, or None. Names must stay inside the data folder."""
    if not filename:
        return "empty file name"
    if filename.startswith(("/", "\\")) or (len(filename) > 1 and filename[1] == ":"):
        return "absolute path"
    parts = filename.replace("\\", "/").split("/")
    if ".." in parts:
        return "path escapes the data folder"
    if len(parts) > 1:
        return "file name contains a folder"
    return None


def read_metadata(data_dir: Path) -> tuple[pd.DataFrame, str]:
    """Read the metadata CSV into a frame with Kaggle's all_data_info columns (strings)."""
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist; pass --data-dir pointing at the "
                        "folder that holds all_data_info.csv and the train*/test image folders")
    adi, ti = data_dir / "all_data_info.csv", data_dir / "train_info.csv"
    if adi.is_file():
        path, rename = adi, {}
        required = {"artist", "new_filename"}
    elif ti.is_file():
        path, rename = ti, {"filename": "new_filename"}
        required = {"artist", "filename"}
    else:
        raise DataError(f"no all_data_info.csv or train_info.csv in {data_dir}; "
                        "download them from Kaggle's Painter by Numbers or run `painting-ml synth`")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; it needs a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a valid UTF-8 CSV ({exc}); re-export it as comma-separated UTF-8") from None
    missing = required - set(frame.columns)
    if missing and len(frame.columns) == 1:
        header = str(frame.columns[0])
        delim = next((d for d, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")) if d in header), None)
        if delim:
            raise DataError(f"{path} looks {delim!r}-delimited (header {header[:60]!r}); lacks column(s) "
                            f"{', '.join(sorted(missing))} — re-export it comma-separated")
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(sorted(missing))} (has: "
                        f"{', '.join(frame.columns)}); is it comma-separated with a header row?")
    if frame.empty:
        raise DataError(f"{path} has a header but no data rows; add paintings to it (or point data_dir "
                        "at the folder with the full CSV)")
    frame = frame.rename(columns=rename)
    for col in ("title", "style", "genre", "date", "source", "artist_group", "in_train",
                "pixelsx", "pixelsy", "size_bytes"):
        if col not in frame.columns:
            frame[col] = ""
    return frame, path.name


def _int_or_none(value: str) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def plan_ingest(data_dir: Path, workers: int = 4, reduced_dir: Path | None = None) -> tuple[list[tuple], list[tuple], str]:
    """Decide, without touching the database, which rows load and which are rejected."""
    frame, source_csv = read_metadata(data_dir)
    index = index_images(data_dir)
    good: list[tuple] = []
    rejects: list[tuple] = []
    seen: dict[str, int] = {}
    candidates: list[tuple[int, dict[str, str], str]] = []
    for line_no, row in enumerate(frame.to_dict("records"), start=1):
        filename = row["new_filename"].strip()
        unsafe = _safe_name(filename)
        if unsafe:
            rejects.append((source_csv, line_no, filename, "unsafe_path", unsafe))
            continue
        if filename in seen:
            rejects.append((source_csv, line_no, filename, "duplicate_row",
                            f"same file name as data row {seen[filename]}"))
            continue
        seen[filename] = line_no
        if not row["artist"].strip():
            rejects.append((source_csv, line_no, filename, "missing_artist", "artist is empty"))
            continue
        rel = index.get(filename)
        if rel is None:
            rejects.append((source_csv, line_no, filename, "missing_file",
                            f"not found in {', '.join(d for d in IMAGE_DIRS if (data_dir / d).is_dir()) or 'any image folder'}"))
            continue
        candidates.append((line_no, row, rel))

    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL releases the GIL while decoding
        from painting_ml.progress import progress

        probes = list(progress(pool.map(lambda c: probe_image(data_dir / c[2], reduced_dir=reduced_dir), candidates),
                               "ingest: decoding images", total=len(candidates), unit="img"))

    for (line_no, row, rel), probe in zip(candidates, probes):
        filename = row["new_filename"].strip()
        if probe.reason:
            rejects.append((source_csv, line_no, filename, probe.reason, probe.detail))
            continue
        in_train = {"true": True, "false": False}.get(row["in_train"].strip().lower())
        good.append((
            filename, row["artist"].strip(), row["title"] or None, row["style"] or None,
            row["genre"] or None, row["date"] or None, row["source"] or None,
            row["artist_group"] or None, in_train, _int_or_none(row["pixelsx"]),
            _int_or_none(row["pixelsy"]), _int_or_none(row["size_bytes"]), str(data_dir), rel,
            probe.width, probe.height, probe.mode, source_csv, probe.reduced_path,
        ))
    return good, rejects, source_csv


def load_rows(conn, good: list[tuple], rejects: list[tuple], source_csv: str) -> tuple[int, int]:
    """COPY ``good`` rows into a staging table and upsert them into ``paintings``; replace the
    ``rejects`` of ``source_csv``. Runs inside the caller's transaction: all or nothing.

    Returns:
        Row counts of ``paintings`` and ``rejects`` afterwards.
    """
    conn.execute(db.sql("ingest", "lock_ingest"))
    conn.execute(db.sql("ingest", "create_staging"))
    with conn.cursor() as cur:
        with cur.copy(db.sql("ingest", "copy_staging")) as copy:
            for row in good:
                copy.write_row(row)
        cur.execute(db.sql("ingest", "analyze_staging"))
        cur.execute(db.sql("ingest", "update_paintings"))
        cur.execute(db.sql("ingest", "insert_new_paintings"))
        # Rejects are replaced per source CSV so a rerun yields the same rows, not duplicates.
        cur.execute(db.sql("ingest", "delete_rejects"), {"source_csv": source_csv})
        with cur.copy(db.sql("ingest", "copy_rejects")) as copy:
            for row in rejects:
                copy.write_row(row)
        cur.execute(db.sql("ingest", "counts"))
        paintings_total, rejects_total = cur.fetchone()
    return int(paintings_total), int(rejects_total)


def ingest(data_dir: str | Path, url: str | None = None) -> IngestSummary:
    """Load ``data_dir`` into the painting database (idempotent, one transaction).

    Returns:
        Counts of this ingest and of the tables afterwards.
    """
    db.migrate(url)
    return _ingest_folder(Path(data_dir).resolve(), url)


def _ingest_folder(data_dir: Path, url: str | None, state: tuple[str, int] | None = None) -> IngestSummary:
    """Plan and load ``data_dir`` (schema already migrated); ``state`` = (fingerprint, file count)
    is recorded in ``ingest_state`` in the same transaction as the rows."""
    from painting_ml.settings import get_settings

    good, rejects, source_csv = plan_ingest(data_dir, reduced_dir=get_settings().home / "reduced")
    with db.connect(url) as conn:
        paintings_total, rejects_total = load_rows(conn, good, rejects, source_csv)
        if state is not None:
            conn.execute(db.sql("ingest", "set_state"), {"root": str(data_dir), "fp": state[0], "files": state[1]})
    summary = IngestSummary(source_csv, len(good) + len(rejects), len(good), len(rejects),
                            paintings_total, rejects_total)
    log.info("ingested %s: %d loaded, %d rejected", data_dir, summary.loaded, summary.rejected)
    return summary


def scan_fingerprint(data_dir: str | Path) -> tuple[str, int]:
    """A hash of every CSV and image file under the data folder (relative path, size, mtime) and
    the file count: it changes when a file is added, removed, replaced or touched."""
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist; set data_dir (or PAINTING_DATA_DIR) "
                        "to the folder that holds all_data_info.csv")
    entries = []
    for root, dirs, files in os.walk(data_dir):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith((".csv", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")):
                p = Path(root) / name
                try:
                    st = p.stat()
                except OSError:
                    continue
                entries.append(f"{p.relative_to(data_dir)}\x1f{st.st_size}\x1f{st.st_mtime_ns}")
    h = hashlib.sha256("\x1e".join(entries).encode("utf-8", "surrogateescape"))
    return h.hexdigest(), len(entries)


def ingest_if_changed(data_dir: str | Path, url: str | None = None) -> dict | None:
    """Ingest ``data_dir`` only when its files changed since the last ingest of that folder.

    Returns the ingest summary, or None when nothing changed (the folder's fingerprint is stored
    in the ingest's own transaction, so a failed ingest is retried next time).
    """
    root = str(Path(data_dir).resolve())
    fingerprint, files = scan_fingerprint(root)
    db.migrate(url)
    with db.connect(url) as conn:
        row = conn.execute(db.sql("ingest", "get_state"), {"root": root}).fetchone()
    if row and row[0] == fingerprint:
        log.info("no change under %s (%d files); nothing to ingest", root, files)
        return None
    summary = _ingest_folder(Path(root), url, state=(fingerprint, files)).to_dict()
    return {**summary, "files": files, "fingerprint": fingerprint[:16]}
