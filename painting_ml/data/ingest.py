"""Ingest Painter-by-Numbers metadata and images into the painting database.

``ingest(data_dir)`` reads ``all_data_info.csv`` (or ``train_info.csv`` when that is all there is),
finds every referenced image in ``train/``, ``train_1``…``train_9`` (also Kaggle's nested
``train_1/train_1/``) and ``test/``, opens each one to record its decoded width, height and mode,
and loads the usable rows with PostgreSQL COPY into a staging table followed by a set-based
update of changed rows and insert of new ones.
Every unusable row goes to ``rejects`` with its reason; nothing is silently dropped, and running it
again on the same data changes no counts.

The catalog mirrors the folder: rows are keyed by (data root, file name), so two folders in one
database never touch each other's rows; a row whose CSV line or file went away is marked gone
(kept only while a dataset version references it, never selected again); a file is a live
painting or a reject, never both (a ``duplicate_row`` reject names a second CSV line of a loaded
file). Symlinks are followed only while their target stays inside the data root.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from painting_ml.core import db, locks
from painting_ml.core.errors import DataError
from painting_ml.data.images import probe_image, root_folder

log = logging.getLogger(__name__)

IMAGE_DIRS = ["train"] + [f"train_{i}" for i in range(1, 10)] + ["test"]
PAINTING_COLUMNS = [
    "filename", "artist", "title", "style", "genre", "date", "source", "artist_group", "in_train",
    "meta_width", "meta_height", "size_bytes", "data_root", "rel_path", "width", "height", "mode", "source_csv",
    "reduced_path",
]


@dataclass(frozen=True)
class IngestSummary:
    source_csv: str
    rows: int
    loaded: int
    rejected: int
    paintings_total: int  # live paintings of this data folder after the ingest
    rejects_total: int    # rejects of this data folder
    gone: int = 0         # rows of this folder whose CSV line or file went away (marked gone or removed)

    def to_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


def resolve_root(data_dir: str | Path) -> str:
    """The key of a data folder in the catalog: its absolute, symlink-free path as text."""
    return str(Path(data_dir).expanduser().resolve())


def index_images(data_dir: Path) -> dict[str, list[str]]:
    """Map image file name -> every path relative to ``data_dir`` it has in the Kaggle image
    folders (more than one: the name is ambiguous and its row is rejected)."""
    index: dict[str, list[str]] = {}
    for name in IMAGE_DIRS:
        for folder in (data_dir / name, data_dir / name / name):  # Kaggle nests train_1/train_1/
            if not folder.is_dir():
                continue
            with os.scandir(folder) as it:
                for entry in it:
                    rel = os.path.relpath(entry.path, data_dir)
                    if rel not in index.setdefault(entry.name, []):
                        index[entry.name].append(rel)
    return index


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


def _escapes(data_dir: Path, rel: str) -> str | None:
    """Where ``rel`` really leads when a symlink on the way points outside ``data_dir``, else None."""
    root = os.path.realpath(data_dir)
    target = os.path.realpath(data_dir / rel)
    return None if target.startswith(root + os.sep) else target


@dataclass(frozen=True)
class CsvRow:
    """One data row of the metadata CSV: its 1-based data row number, the file line it starts on,
    and its fields by column name (None when the row cannot be read; ``problem`` says why)."""

    line_no: int
    file_line: int
    fields: dict[str, str] | None
    problem: tuple[str, str] | None = None


def read_metadata(data_dir: Path) -> tuple[list[CsvRow], str]:
    """Read the metadata CSV into rows with Kaggle's all_data_info columns (strings).

    Parsed with the ``csv`` module rather than pandas so that each row keeps its own field count:
    a row with too many or too few fields becomes one ``wrong_field_count`` reject instead of
    shifting the columns of every row or failing the whole file. File-level problems (not UTF-8,
    no header, missing columns, another delimiter) are one :class:`DataError` naming the file,
    the line and the fix.
    """
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
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path} is not a valid UTF-8 CSV (line {line}, byte {exc.start}: {exc.reason}); "
                        "re-export it as comma-separated UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise DataError(f"{path} is empty; it needs a header row and data rows")
        missing = required - set(header)
        if missing and len(header) == 1:
            delim = next((d for d in (";", "\t", "|") if d in header[0]), None)
            if delim:
                raise DataError(f"{path} looks {delim!r}-delimited (header {header[0][:60]!r}); lacks column(s) "
                                f"{', '.join(sorted(missing))} — re-export it comma-separated")
        if missing:
            raise DataError(f"{path} lacks column(s) {', '.join(sorted(missing))} (has: "
                            f"{', '.join(header)}); is it comma-separated with a header row?")
        columns = [rename.get(h, h) for h in header]
        rows: list[CsvRow] = []
        file_line = reader.line_num + 1
        for record in reader:
            start, file_line = file_line, reader.line_num + 1
            if not record:
                continue  # a blank line
            line_no = len(rows) + 1
            if len(record) != len(columns):
                rows.append(CsvRow(line_no, start, None, (
                    "wrong_field_count",
                    f"file line {start}: {len(record)} fields, the header has {len(columns)}")))
                continue
            fields = dict(zip(columns, record))
            for col in OPTIONAL_COLUMNS:
                fields.setdefault(col, "")
            rows.append(CsvRow(line_no, start, fields))
    except csv.Error as exc:
        raise DataError(f"{path} cannot be read as CSV at file line {reader.line_num} ({exc}); "
                        "re-export it as comma-separated UTF-8") from None
    if not rows:
        raise DataError(f"{path} has a header but no data rows; add paintings to it (or point data_dir "
                        "at the folder with the full CSV)")
    return rows, path.name


OPTIONAL_COLUMNS = ("title", "style", "genre", "date", "source", "artist_group", "in_train",
                    "pixelsx", "pixelsy", "size_bytes")
# Columns stored as integers, with the range of their database type.
_INT_COLUMNS = {"pixelsx": (0, 2**31 - 1), "pixelsy": (0, 2**31 - 1), "size_bytes": (0, 2**63 - 1)}


def _whole_number(col: str, value: str) -> tuple[int | None, str | None]:
    """``value`` as an int in ``col``'s range (empty -> None), or why it is not one."""
    value = value.strip()
    if not value:
        return None, None
    try:
        d = Decimal(value)
    except InvalidOperation:
        return None, f"{col} {value[:40]!r} is not a number"
    if not d.is_finite():
        return None, f"{col} {value[:40]!r} is not a finite number"
    lo, hi = _INT_COLUMNS[col]
    if d < lo or d > hi:
        return None, f"{col} {value[:40]!r} is out of range ({lo}..{hi})"
    if d != d.to_integral_value():
        return None, f"{col} {value[:40]!r} is not a whole number"
    return int(d), None


def _row_values(fields: dict[str, str]) -> tuple[dict[str, int | None], str | None]:
    """The row's numbers, or why one of its values cannot be stored."""
    for col, value in fields.items():
        if "\x00" in value:
            return {}, f"{col} contains a NUL byte"
    numbers = {}
    for col in _INT_COLUMNS:
        numbers[col], problem = _whole_number(col, fields[col])
        if problem:
            return {}, problem
    return numbers, None


def plan_ingest(data_dir: Path, workers: int = 4, reduced_dir: Path | None = None) -> tuple[list[tuple], list[tuple], str]:
    """Decide, without touching the database, which rows load and which are rejected.

    ``reduced_dir``: where converted copies go; each data root gets its own folder below it.
    Reject rows are ``(data_root, source_csv, line_no, filename, reason, detail)``.
    """
    root = resolve_root(data_dir)
    rows, source_csv = read_metadata(data_dir)
    index = index_images(data_dir)
    good: list[tuple] = []
    rejects: list[tuple] = []
    seen: dict[str, int] = {}
    candidates: list[tuple[CsvRow, str, str, dict]] = []

    def reject(row: CsvRow, filename: str, reason: str, detail: str) -> None:
        rejects.append((root, source_csv, row.line_no, filename, reason, detail))

    for row in rows:
        if row.fields is None:
            reject(row, "", *row.problem)
            continue
        raw_name = row.fields["new_filename"]
        # A name with a leading space or dot is taken as written when such a file exists.
        filename = raw_name if raw_name in index else raw_name.strip()
        numbers, bad_value = _row_values(row.fields)
        if bad_value:
            reject(row, filename.replace("\x00", ""), "bad_value", f"file line {row.file_line}: {bad_value}")
            continue
        unsafe = _safe_name(filename)
        if unsafe:
            reject(row, filename, "unsafe_path", unsafe)
            continue
        if filename in seen:
            reject(row, filename, "duplicate_row", f"same file name as data row {seen[filename]}")
            continue
        seen[filename] = row.line_no
        if not row.fields["artist"].strip():
            reject(row, filename, "missing_artist", "artist is empty")
            continue
        found = index.get(filename)
        if not found:
            reject(row, filename, "missing_file",
                   f"not found in {', '.join(d for d in IMAGE_DIRS if (data_dir / d).is_dir()) or 'any image folder'}")
            continue
        if len(found) > 1:
            reject(row, filename, "ambiguous_file", f"the name is in {' and '.join(sorted(found))}; keep one")
            continue
        target = _escapes(data_dir, found[0])
        if target:
            reject(row, filename, "unsafe_path", f"{found[0]} is a link to {target}, outside the data folder")
            continue
        candidates.append((row, filename, found[0], numbers))

    copies = root_folder(reduced_dir, root) if reduced_dir is not None else None
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL releases the GIL while decoding
        from painting_ml.core.progress import progress

        probes = list(progress(pool.map(lambda c: probe_image(data_dir / c[2], reduced_dir=copies), candidates),
                               "ingest: decoding images", total=len(candidates), unit="img"))

    for (row, filename, rel, numbers), probe in zip(candidates, probes):
        f = row.fields
        if probe.reason:
            reject(row, filename, probe.reason, probe.detail)
            continue
        in_train = {"true": True, "false": False}.get(f["in_train"].strip().lower())
        good.append((
            filename, f["artist"].strip(), f["title"] or None, f["style"] or None,
            f["genre"] or None, f["date"] or None, f["source"] or None,
            f["artist_group"] or None, in_train, numbers["pixelsx"], numbers["pixelsy"], numbers["size_bytes"],
            root, rel, probe.width, probe.height, probe.mode, source_csv, probe.reduced_path,
        ))
    return good, rejects, source_csv


def load_rows(conn, good: list[tuple], rejects: list[tuple], source_csv: str, root: str) -> dict[str, int]:
    """Make the catalog of ``root`` mirror the folder, inside the caller's transaction (all or
    nothing): COPY ``good`` into a staging table, rewrite changed rows, insert new ones, mark the
    root's rows that are no longer good as gone (deleting those no dataset version references),
    and replace the root's rejects. Other roots' rows are never touched.

    Returns:
        ``paintings_total``/``rejects_total`` (the root's live paintings and rejects afterwards)
        and ``gone`` (rows of the root marked gone or removed by this ingest).
    """
    conn.execute(db.sql("ingest", "lock_ingest"), {"lock": locks.INGEST})
    conn.execute(db.sql("ingest", "create_staging"))
    with conn.cursor() as cur:
        with cur.copy(db.sql("ingest", "copy_staging")) as copy:
            for row in good:
                copy.write_row(row)
        cur.execute(db.sql("ingest", "analyze_staging"))
        cur.execute(db.sql("ingest", "update_paintings"))
        cur.execute(db.sql("ingest", "insert_new_paintings"))
        cur.execute(db.sql("ingest", "mark_gone"), {"root": root})
        gone = cur.rowcount
        cur.execute(db.sql("ingest", "delete_unreferenced_gone"), {"root": root})
        # Rejects are replaced per data root so a rerun yields the same rows, not duplicates.
        cur.execute(db.sql("ingest", "delete_rejects"), {"root": root})
        with cur.copy(db.sql("ingest", "copy_rejects")) as copy:
            for row in rejects:
                copy.write_row(row)
        cur.execute(db.sql("ingest", "counts"), {"root": root})
        totals = cur.fetchone()
    return {"paintings_total": int(totals["paintings_total"]), "rejects_total": int(totals["rejects_total"]),
            "gone": max(gone, 0)}


def ingest(data_dir: str | Path, url: str | None = None) -> IngestSummary:
    """Load ``data_dir`` into the painting database (idempotent, one transaction).

    Returns:
        Counts of this ingest and of the tables afterwards.
    """
    return _ingest_folder(Path(resolve_root(data_dir)), url)


def _ingest_folder(data_dir: Path, url: str | None, state: tuple[str, int] | None = None) -> IngestSummary:
    """Plan and load ``data_dir``; ``state`` = (fingerprint, file count)
    is recorded in ``ingest_state`` in the same transaction as the rows."""
    from painting_ml.core.settings import get_settings

    good, rejects, source_csv = plan_ingest(data_dir, reduced_dir=get_settings().home / "reduced")
    root = str(data_dir)
    with db.connect(url) as conn:
        totals = load_rows(conn, good, rejects, source_csv, root)
        if state is not None:
            conn.execute(db.sql("ingest", "set_state"), {"root": root, "fp": state[0], "files": state[1]})
    summary = IngestSummary(source_csv, len(good) + len(rejects), len(good), len(rejects),
                            totals["paintings_total"], totals["rejects_total"], totals["gone"])
    log.info("ingested %s: %d loaded, %d rejected", data_dir, summary.loaded, summary.rejected)
    return summary


def scan_fingerprint(data_dir: str | Path) -> tuple[str, int]:
    """A hash of every CSV and image file under the data folder (relative path, size, mtime) and
    the file count: it changes when a file is added, removed, replaced or touched."""
    data_dir = Path(resolve_root(data_dir))
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
    root = resolve_root(data_dir)
    fingerprint, files = scan_fingerprint(root)
    with db.connect(url) as conn:
        row = db.fetch_one(conn, db.sql("ingest", "get_state"), {"root": root})
    if row and row["fingerprint"] == fingerprint:
        log.info("no change under %s (%d files); nothing to ingest", root, files)
        return None
    summary = _ingest_folder(Path(root), url, state=(fingerprint, files)).to_dict()
    return {**summary, "files": files, "fingerprint": fingerprint[:16]}
