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

Incremental: a per-file manifest (``ingest_files``: relative path, size, mtime, the CSV row's hash
and what probing found) lets an ingest decode only new or changed files and write only new or
changed rows; the whole-folder fingerprint (``ingest_state``) stays the cheap "anything changed?"
check. The CLI and the DAG share :func:`ingest_if_changed`; ``full=True`` (``--full``) decodes
everything again. A file rewritten with the same size inside one mtime tick is not noticed;
``--full`` covers that.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from painting_ml.core import db, locks
from painting_ml.core.errors import DataError
from painting_ml.core.parallel import map_in_chunks
from painting_ml.data.images import ImageProbe, probe_image, probe_recipe, root_folder

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
    probed: int = 0       # images decoded by this ingest (the rest were unchanged: manifest reused)
    changed_rows: int = 0  # CSV rows new or changed since the last ingest

    def to_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


def resolve_root(data_dir: str | Path) -> str:
    """The key of a data folder in the catalog: its absolute, symlink-free path as text."""
    return str(Path(data_dir).expanduser().resolve())


def index_images(data_dir: Path, links: set[str] | None = None,
                 listing: dict[str, list[tuple[str, str, bool]]] | None = None) -> dict[str, list[str]]:
    """Map image file name -> every path relative to ``data_dir`` it has in the Kaggle image
    folders (more than one: the name is ambiguous and its row is rejected).

    ``links``, when given, receives the relative paths a symlink leads to or through (an entry
    that is a link, or one in a folder reached by a link): only those can escape the data folder,
    so only those need resolving (resolving all 100k paths of the real set would take seconds).
    ``listing``: the folders as :func:`_scan` listed them, so they are not listed twice."""
    index: dict[str, list[str]] = {}
    real_root = os.path.realpath(data_dir)
    for name in IMAGE_DIRS:
        for folder in (data_dir / name, data_dir / name / name):  # Kaggle nests train_1/train_1/
            if not folder.is_dir():
                continue
            rel_folder = os.path.relpath(folder, data_dir)
            linked = os.path.realpath(folder) != os.path.join(real_root, rel_folder)
            if listing is not None and not linked and rel_folder in listing:
                found = listing[rel_folder]
            else:
                with os.scandir(folder) as it:
                    found = [(e.name, os.path.relpath(e.path, data_dir), e.is_symlink()) for e in it]
            for name_, rel, is_link in found:
                if rel not in index.setdefault(name_, []):
                    index[name_].append(rel)
                if links is not None and (linked or is_link):
                    links.add(rel)
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
        # Optional columns the file lacks are read as empty: every row's fields have the same keys.
        absent = [col for col in OPTIONAL_COLUMNS if col not in columns]
        keys, blanks = columns + absent, [""] * len(absent)
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
            rows.append(CsvRow(line_no, start, dict(zip(keys, record + blanks))))
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
    if value.isascii() and value.isdigit():  # the common case, without Decimal
        n = int(value)
        lo, hi = _INT_COLUMNS[col]
        if n <= hi:
            return n, None
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
    if "\x00" in "".join(fields.values()):  # one scan per row; the column is looked up only then
        col = next(c for c, value in fields.items() if "\x00" in value)
        return {}, f"{col} contains a NUL byte"
    numbers = {}
    for col in _INT_COLUMNS:
        numbers[col], problem = _whole_number(col, fields[col])
        if problem:
            return {}, problem
    return numbers, None


@dataclass
class IngestPlan:
    """What an ingest will write, decided without touching the database.

    Attributes:
        good: rows for ``paintings`` in :data:`PAINTING_COLUMNS` order.
        rejects: ``(data_root, source_csv, line_no, filename, reason, detail)``.
        source_csv: the CSV's file name.
        files: manifest rows for ``ingest_files`` (one per probed or reused image file).
        probed: images decoded by this plan; the rest reused the manifest's outcome.
        changed_rows: CSV rows new or changed since the manifest was written (all on a first ingest).
        delta: None for a full plan (every row and manifest entry is written, the root's other rows
            are marked gone); for a plan against the manifest, what changed relative to it:
            ``stage`` (good rows new or changed), ``files`` (manifest rows new or changed),
            ``gone_names`` (file names good last time, not now) and ``old_files`` (manifest
            paths no CSV row leads to any more).
    """

    good: list[tuple]
    rejects: list[tuple]
    source_csv: str
    files: list[tuple]
    probed: int
    changed_rows: int
    delta: dict | None = None


def default_workers() -> int:
    """The probe and augmentation pool size: ``PAINTING_WORKERS``, else the cores this process may use."""
    from painting_ml.core.settings import get_settings

    return get_settings().workers


def _row_hash(fields: dict[str, str], source_csv: str) -> str:
    """A stable hash of one CSV row's fields (in the CSV's column order) and the CSV's name."""
    text = "\x1f".join(fields.values()) + "\x1e" + "\x1f".join(fields) + "\x1e" + source_csv
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def probe_all(paths: list[Path], workers: int, copies: Path | None) -> list[ImageProbe]:
    """Probe ``paths`` in order with ``workers`` threads (serially for 1).

    Threads, not processes: PIL releases the GIL while it decodes, ~80% of probing a real-sized
    JPEG (cProfile, 1600x1200), so threads scale on those (bench/scale.py --realistic: 1.5-1.9x at
    2 workers on 2 cores). On tiny images the Python around the decoder dominates and 2 threads
    gain nothing; the catalog's real images are large."""
    return map_in_chunks(lambda path: probe_image(path, reduced_dir=copies), paths, workers, 32,
                         "ingest: decoding images")


# Below this median file size a decode is too short for a second thread to gain anything: the
# Python around it holds the GIL (measured on 2 cores, 400 painting-like JPEGs, 1 vs 2 threads:
# 1.6 KB 0.86x, 6.5 KB 1.09x, 26 KB 1.52x, 108 KB 1.49x; Painter by Numbers' files average ~485 KB).
THREADS_FROM_BYTES = 8 * 1024


def _probe_workers(workers: int, stats: list[tuple[int, int] | None]) -> int:
    """``workers``, or 1 when the files to probe are thumbnails (median below THREADS_FROM_BYTES)."""
    sizes = sorted(st[0] for st in stats if st is not None)
    return 1 if sizes and sizes[len(sizes) // 2] < THREADS_FROM_BYTES else workers


def plan_ingest(data_dir: Path, workers: int | None = None, reduced_dir: Path | None = None,
                known: dict[str, dict] | None = None,
                scan: FolderScan | None = None) -> IngestPlan:
    """Decide, without touching the database, which rows load and which are rejected.

    Args:
        data_dir: the data folder (resolved).
        workers: probe pool size (default: :func:`default_workers`).
        reduced_dir: where converted copies go; each data root gets its own folder below it.
        known: the root's manifest by relative path (``ingest_files`` rows); a file whose size and
            mtime are unchanged and that was probed by the same recipe is not decoded again.
            None: probe every file (a first or a ``--full`` ingest).
        scan: the folder as just scanned: its listing and file stats are used instead of listing
            and stat'ing it again.
    """
    root = resolve_root(data_dir)
    rows, source_csv = read_metadata(data_dir)
    links: set[str] = set()
    index = index_images(data_dir, links, scan.listing if scan else None)
    stats = scan.stats if scan else None
    known = known or {}
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
        target = _escapes(data_dir, found[0]) if found[0] in links else None
        if target:
            reject(row, filename, "unsafe_path", f"{found[0]} is a link to {target}, outside the data folder")
            continue
        candidates.append((row, filename, found[0], numbers))

    copies = root_folder(reduced_dir, root) if reduced_dir is not None else None
    recipe = probe_recipe(copies is not None)
    probes: list[ImageProbe | None] = []
    stat_of: list[tuple[int, int] | None] = []
    todo: list[int] = []
    changed_rows = 0
    hashes = []
    for i, (row, _, rel, _) in enumerate(candidates):
        st = stats.get(rel) if stats is not None else None
        if st is None:
            try:  # taken before the probe: a file written meanwhile differs from it next time
                s = os.stat(data_dir / rel)
                st = (s.st_size, s.st_mtime_ns)
            except OSError:
                st = None  # probing names the problem
        stat_of.append(st)
        h = _row_hash(row.fields, source_csv)
        hashes.append(h)
        entry = known.get(rel)
        if entry is None or entry["row_hash"] != h:
            changed_rows += 1
        reused = _reuse(entry, st, recipe, copies)
        probes.append(reused)
        if reused is None:
            todo.append(i)
    fresh = probe_all([data_dir / candidates[i][2] for i in todo],
                      _probe_workers(workers or default_workers(), [stat_of[i] for i in todo]), copies)
    for i, probe in zip(todo, fresh):
        probes[i] = probe

    files: list[tuple] = []
    stage: list[tuple] = []
    changed_files: list[tuple] = []
    for (row, filename, rel, numbers), probe, st, h in zip(candidates, probes, stat_of, hashes):
        f = row.fields
        entry = known.get(rel)
        file_changed = True
        if st is not None:
            files.append((root, rel, st[0], st[1], h, recipe, probe.width or None, probe.height or None,
                          probe.mode or None, probe.reason or None, probe.detail or None, probe.reduced_path))
            file_changed = entry is None or _entry_key(entry) != files[-1][2:]
            if file_changed:
                changed_files.append(files[-1])
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
        # The catalog row is a function of the CSV row, the CSV's name, the path and the probe: when
        # none of them changed since the last ingest loaded it, it is already there as written.
        if file_changed or entry["reason"] is not None:
            stage.append(good[-1])
    delta = None
    if known:
        now_good = {g[0] for g in good}
        now_files = {f[1] for f in files}
        delta = {"stage": stage, "files": changed_files,
                 "gone_names": sorted({os.path.basename(rel) for rel, e in known.items() if e["reason"] is None}
                                      - now_good),
                 "old_files": sorted(set(known) - now_files)}
    return IngestPlan(good, rejects, source_csv, files, len(todo), changed_rows, delta)


def _entry_key(entry: dict) -> tuple:
    """A manifest row's values in the order of :class:`IngestPlan` ``files`` rows (after root and path)."""
    return (entry["size_bytes"], entry["mtime_ns"], entry["row_hash"], entry["recipe"], entry["width"],
            entry["height"], entry["mode"], entry["reason"], entry["detail"], entry["reduced_path"])


def _reuse(entry: dict | None, st: tuple[int, int] | None, recipe: str, copies: Path | None) -> ImageProbe | None:
    """The manifest's probe outcome when the file is unchanged (same size and mtime, same recipe,
    its converted copy still there, in this ingest's copy folder), else None: probe it."""
    if entry is None or st is None or (entry["size_bytes"], entry["mtime_ns"]) != st or entry["recipe"] != recipe:
        return None
    copy = entry["reduced_path"]
    if copy and (copies is None or Path(copy).parent != copies or not os.path.isfile(copy)):
        return None
    return ImageProbe(width=entry["width"] or 0, height=entry["height"] or 0, mode=entry["mode"] or "",
                      reason=entry["reason"] or "", detail=entry["detail"] or "", reduced_path=entry["reduced_path"])


def load_rows(conn, good: list[tuple], rejects: list[tuple], source_csv: str, root: str,
              gone_names: list[str] | None = None) -> dict[str, int]:
    """Make the catalog of ``root`` mirror the folder, inside the caller's transaction (all or
    nothing): COPY ``good`` into a staging table, rewrite changed rows, insert new ones, mark the
    root's rows that are no longer good as gone (deleting those no dataset version references),
    and replace the root's rejects. Other roots' rows are never touched. A root's first load
    (no row of it yet) COPYs ``good`` straight into the catalog instead.

    ``gone_names``: an incremental load: ``good`` holds only the new or changed rows, and the rows
    to mark gone are these file names (instead of every row of the root not in ``good``).

    Returns:
        ``paintings_total``/``rejects_total`` (the root's live paintings and rejects afterwards)
        and ``gone`` (rows of the root marked gone or removed by this ingest).
    """
    conn.execute(db.sql("ingest", "lock_ingest"), {"lock": locks.INGEST})  # re-entrant: callers may hold it
    # A root with no row yet (its first ingest) has nothing to update, mark gone or count: the
    # insert is all there is, and its row count is the total. Checked under the ingest lock.
    first = (not db.fetch_one(conn, db.sql("ingest", "root_has_rows"), {"root": root})["has_rows"]
             and all(row[_ROOT] == root for row in good))
    # In primary-key order (code-point order is the key's order under a C collation), the inserts
    # take the B-tree's rightmost-page fast path instead of a descent per row (~1/4 of a 100k load).
    good = sorted(good, key=_by_filename)
    with conn.cursor() as cur:
        if first:
            # Nothing to compare against: COPY straight into the catalog. The server inserts while
            # the client is still encoding rows (a staging table would serialise the two, and write
            # every row twice). File names are unique here: a second CSV line of a name is a reject.
            _copy(cur, "copy_paintings", "paintings", PAINTING_COLUMNS, good)
        else:
            conn.execute(db.sql("ingest", "create_staging"))
            _copy(cur, "copy_staging", "staging_paintings", PAINTING_COLUMNS, good)
            cur.execute(db.sql("ingest", "analyze_staging"))
            cur.execute(db.sql("ingest", "update_paintings"))
            cur.execute(db.sql("ingest", "insert_new_paintings"))
            if gone_names is None:
                cur.execute(db.sql("ingest", "mark_gone"), {"root": root})
            else:
                cur.execute(db.sql("ingest", "mark_gone_names"), {"root": root, "names": gone_names})
            gone = max(cur.rowcount, 0)
            cur.execute(db.sql("ingest", "delete_unreferenced_gone"), {"root": root})
        # Rejects are replaced per data root so a rerun yields the same rows, not duplicates.
        cur.execute(db.sql("ingest", "delete_rejects"), {"root": root})
        _copy(cur, "copy_rejects", "rejects", REJECT_COLUMNS, rejects)
        if first:
            return {"paintings_total": len(good), "rejects_total": len(rejects), "gone": 0}
        cur.execute(db.sql("ingest", "counts"), {"root": root})
        totals = cur.fetchone()
    return {"paintings_total": int(totals["paintings_total"]), "rejects_total": int(totals["rejects_total"]),
            "gone": gone}


REJECT_COLUMNS = ["data_root", "source_csv", "line_no", "filename", "reason", "detail"]
FILE_COLUMNS = ["data_root", "rel_path", "size_bytes", "mtime_ns", "row_hash", "recipe", "width", "height", "mode",
                "reason", "detail", "reduced_path"]
_ROOT = PAINTING_COLUMNS.index("data_root")


def _by_filename(row: tuple) -> str:
    return row[0]


def _copy(cur, statement: str, table: str, columns: list[str], rows: list[tuple]) -> None:
    """COPY ``rows`` (values in ``columns`` order) with the named statement of sql/ingest.sql.

    Binary COPY: the client sends each value in its column's own type, so neither side formats
    or parses text (about 3x less client CPU than text COPY for the catalog's rows)."""
    oids = [r["oid"] for r in db.fetch_dicts(cur.connection, db.sql("ingest", "column_types"),
                                             {"table": table, "columns": columns})]
    assert len(oids) == len(columns), f"{table} lacks one of {columns}"
    with cur.copy(db.sql("ingest", statement)) as copy:
        copy.set_types(oids)
        for row in rows:
            copy.write_row(row)


def record_manifest(conn, root: str, files: list[tuple], old_files: list[str] | None = None) -> None:
    """Make ``root``'s rows of the per-file manifest equal ``files``, inside the caller's transaction.

    ``old_files``: an incremental write: ``files`` holds only new or changed entries, and these
    paths are the entries to remove (instead of every entry of the root not in ``files``)."""
    conn.execute(db.sql("ingest", "create_staging_files"))
    with conn.cursor() as cur:
        _copy(cur, "copy_staging_files", "staging_files", FILE_COLUMNS, files)
        cur.execute(db.sql("ingest", "update_files"))
        cur.execute(db.sql("ingest", "insert_new_files"))
        if old_files is None:
            cur.execute(db.sql("ingest", "delete_old_files"), {"root": root})
        else:
            cur.execute(db.sql("ingest", "delete_files"), {"root": root, "paths": old_files})


def ingest(data_dir: str | Path, url: str | None = None, full: bool = False) -> IngestSummary:
    """Load ``data_dir`` into the painting database (idempotent, one transaction).

    Incremental: only images that are new or changed (by size and mtime) since the last ingest of
    the folder are decoded; ``full`` decodes every one again. The folder's fingerprint is recorded
    in the same transaction, so the next :func:`ingest_if_changed` sees no change.

    Returns:
        Counts of this ingest and of the tables afterwards.
    """
    root = resolve_root(data_dir)
    return _ingest_folder(Path(root), url, _scan(root), full)


def _ingest_folder(data_dir: Path, url: str | None, scan: FolderScan, full: bool) -> IngestSummary:
    """Plan and load ``data_dir``; the ``scan``'s fingerprint and file count are recorded in
    ``ingest_state`` and the per-file manifest in ``ingest_files``, in the same transaction as the rows."""
    from painting_ml.core.settings import get_settings

    root = str(data_dir)
    known, stamp = None, None
    if not full:
        with db.connect(url) as conn:
            known = {r["rel_path"]: r for r in db.fetch_dicts(conn, db.sql("ingest", "manifest"), {"root": root})}
            stamp = db.fetch_one(conn, db.sql("ingest", "state_stamp"), {"root": root})
    # Decoding happens here, before the transaction opens.
    plan = plan_ingest(data_dir, reduced_dir=get_settings().home / "reduced", known=known, scan=scan)
    with db.connect(url) as conn:
        conn.execute(db.sql("ingest", "lock_ingest"), {"lock": locks.INGEST})
        delta = plan.delta
        if delta is not None and db.fetch_one(conn, db.sql("ingest", "state_stamp"), {"root": root}) != stamp:
            delta = None  # another ingest of the folder committed since the manifest was read: write it all
        if delta is None:
            totals = load_rows(conn, plan.good, plan.rejects, plan.source_csv, root)
            record_manifest(conn, root, plan.files)
        else:
            totals = load_rows(conn, delta["stage"], plan.rejects, plan.source_csv, root, delta["gone_names"])
            record_manifest(conn, root, delta["files"], delta["old_files"])
        conn.execute(db.sql("ingest", "set_state"), {"root": root, "fp": scan.fingerprint, "files": scan.files})
    summary = IngestSummary(plan.source_csv, len(plan.good) + len(plan.rejects), len(plan.good), len(plan.rejects),
                            totals["paintings_total"], totals["rejects_total"], totals["gone"],
                            plan.probed, plan.changed_rows)
    log.info("ingested %s: %d loaded, %d rejected; %d images decoded, %d rows new or changed",
             data_dir, summary.loaded, summary.rejected, summary.probed, summary.changed_rows)
    return summary


_IMAGE_SUFFIXES = (".csv", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")


def scan_fingerprint(data_dir: str | Path) -> tuple[str, int]:
    """A hash of every CSV and image file under the data folder (relative path, size, mtime) and
    the file count: it changes when a file is added, removed, replaced or touched."""
    scan = _scan(data_dir)
    return scan.fingerprint, scan.files


@dataclass
class FolderScan:
    """One pass over a data folder: what the fingerprint, the incremental plan and the image index
    need, so the 100k-file folder is listed and stat'ed once.

    Attributes:
        fingerprint: sha256 over (relative path, size, mtime) of every CSV and image file.
        files: how many files that covers.
        stats: ``{relative path: (size, mtime_ns)}`` of those files.
        listing: ``{relative folder: [(name, relative path, is a symlink)]}`` of every folder
            reached without following a symlink (all entries, folders included).
    """

    fingerprint: str
    files: int
    stats: dict[str, tuple[int, int]]
    listing: dict[str, list[tuple[str, str, bool]]]


def _scan(data_dir: str | Path) -> FolderScan:
    """Scan ``data_dir`` (see :class:`FolderScan`); files in a folder before its sub-folders, both
    by name, as ``os.walk`` lists them; symlinked folders are not entered."""
    data_dir = Path(resolve_root(data_dir))
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist; set data_dir (or PAINTING_DATA_DIR) "
                        "to the folder that holds all_data_info.csv")
    entries: list[str] = []
    stats: dict[str, tuple[int, int]] = {}
    listing: dict[str, list[tuple[str, str, bool]]] = {}

    def walk(folder: str, rel_folder: str) -> None:
        with os.scandir(folder) as it:
            items = sorted(it, key=lambda e: e.name)
        here = listing[rel_folder] = []
        subdirs = []
        for entry in items:
            rel = entry.name if rel_folder == "." else f"{rel_folder}{os.sep}{entry.name}"
            link = entry.is_symlink()
            here.append((entry.name, rel, link))
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not link:
                    subdirs.append((entry.path, rel))
                continue
            if entry.name.lower().endswith(_IMAGE_SUFFIXES):
                try:
                    st = entry.stat()
                except OSError:
                    continue
                stats[rel] = (st.st_size, st.st_mtime_ns)
                entries.append(f"{rel}\x1f{st.st_size}\x1f{st.st_mtime_ns}")
        for path, rel in subdirs:
            walk(path, rel)

    walk(str(data_dir), ".")
    h = hashlib.sha256("\x1e".join(entries).encode("utf-8", "surrogateescape"))
    return FolderScan(h.hexdigest(), len(entries), stats, listing)


def ingest_if_changed(data_dir: str | Path, url: str | None = None, full: bool = False) -> dict | None:
    """Ingest ``data_dir`` only when its files changed since the last ingest of that folder: the
    one ingest path of the CLI and the DAG.

    The folder's fingerprint is the cheap "anything changed?" check; when it differs, the ingest
    decodes only new or changed images (:func:`ingest`). ``full`` ingests and decodes everything
    whatever the fingerprint says.

    Returns the ingest summary, or None when nothing changed (the folder's fingerprint is stored
    in the ingest's own transaction, so a failed ingest is retried next time).
    """
    root = resolve_root(data_dir)
    scan = _scan(root)
    fingerprint, files = scan.fingerprint, scan.files
    if not full:
        with db.connect(url) as conn:
            row = db.fetch_one(conn, db.sql("ingest", "get_state"), {"root": root})
        if row and row["fingerprint"] == fingerprint:
            log.info("no change under %s (%d files); nothing to ingest", root, files)
            return None
    summary = _ingest_folder(Path(root), url, scan, full).to_dict()
    return {**summary, "files": files, "fingerprint": fingerprint[:16]}
