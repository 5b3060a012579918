"""Planning an ingest: which CSV rows load and which are rejected, which images need decoding,
and what changed relative to the per-file manifest. Nothing here touches the database.

A row passes the checks of :mod:`~painting_ml.data.ingest.rows`, is matched to exactly one file
in the image folders (:mod:`~painting_ml.data.ingest.scan`), and its file is probed, or its probe
outcome reused from the manifest when the file is unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from painting_ml.core.parallel import map_in_chunks
from painting_ml.data.images import ImageProbe, probe_image, probe_recipe, root_folder
from painting_ml.data.ingest.records import CatalogRow, FileRecord, Reject
from painting_ml.data.ingest.rows import CsvRow, read_metadata, row_hash, row_numbers, safe_name
from painting_ml.data.ingest.scan import IMAGE_DIRS, FileStat, FolderScan, escapes, index_images, resolve_root

# Below this median file size a decode is too short for a second thread to gain anything: the
# Python around it holds the GIL (measured on 2 cores, 400 painting-like JPEGs, 1 vs 2 threads:
# 1.6 KB 0.86x, 6.5 KB 1.09x, 26 KB 1.52x, 108 KB 1.49x; Painter by Numbers' files average ~485 KB).
THREADS_FROM_BYTES = 8 * 1024
_IN_TRAIN = {"true": True, "false": False}


@dataclass(frozen=True)
class PlanDelta:
    """What an incremental plan writes, relative to the manifest it was planned against.

    Attributes:
        stage: good rows that are new or changed.
        files: manifest records that are new or changed.
        gone_names: file names that were good last time and are not now.
        old_files: manifest paths no CSV row leads to any more.
    """

    stage: list[CatalogRow]
    files: list[FileRecord]
    gone_names: list[str]
    old_files: list[str]


@dataclass(frozen=True)
class IngestPlan:
    """What an ingest will write, decided without touching the database.

    Attributes:
        good: the rows for ``paintings``.
        rejects: the rows for ``rejects``.
        source_csv: the CSV's file name.
        files: the manifest records (one per probed or reused image file).
        probed: images decoded by this plan; the rest reused the manifest's outcome.
        changed_rows: CSV rows new or changed since the manifest was written (all on a first ingest).
        delta: None for a full plan (every row and manifest record is written, the root's other
            rows are marked gone); for a plan against a manifest, what changed relative to it.
    """

    good: list[CatalogRow]
    rejects: list[Reject]
    source_csv: str
    files: list[FileRecord]
    probed: int
    changed_rows: int
    delta: PlanDelta | None = None


class _Candidate(NamedTuple):
    """A row that passed every check that needs no decoding, and the one file it leads to."""

    row: CsvRow
    fields: dict[str, str]
    filename: str
    rel_path: str
    numbers: dict[str, int | None]
    row_hash: str


def default_workers() -> int:
    """The probe and augmentation pool size: ``PAINTING_WORKERS``, else the cores this process may use."""
    from painting_ml.core.settings import get_settings

    return get_settings().workers


def probe_all(paths: list[Path], workers: int, copies: Path | None) -> list[ImageProbe]:
    """Probe ``paths`` in order with ``workers`` threads (serially for 1).

    Threads, not processes: PIL releases the GIL while it decodes, ~80% of probing a real-sized
    JPEG (cProfile, 1600x1200), so threads scale on those (bench/scale.py --realistic). On tiny
    images the Python around the decoder dominates and a second thread gains nothing; the
    catalog's real images are large.

    Args:
        paths: the image files.
        workers: pool size.
        copies: the data root's folder of converted copies (None: none may be written).

    Returns:
        One probe per path, in order.
    """
    return map_in_chunks(lambda path: probe_image(path, reduced_dir=copies, identity=True), paths, workers, 32,
                         "ingest: decoding images")


def _probe_workers(workers: int, stats: list[FileStat | None]) -> int:
    """``workers``, or 1 when the files to probe are thumbnails (median below THREADS_FROM_BYTES)."""
    sizes = sorted(st.size for st in stats if st is not None)
    return 1 if sizes and sizes[len(sizes) // 2] < THREADS_FROM_BYTES else workers


def plan_ingest(data_dir: Path, workers: int | None = None, reduced_dir: Path | None = None,
                known: dict[str, FileRecord] | None = None, scan: FolderScan | None = None) -> IngestPlan:
    """Decide, without touching the database, which rows load and which are rejected.

    Args:
        data_dir: the data folder (resolved).
        workers: probe pool size (default: :func:`default_workers`).
        reduced_dir: where converted copies go; each data root gets its own folder below it.
        known: the root's manifest by relative path; a file whose size and mtime are unchanged
            and that was probed by the same recipe is not decoded again. None or empty: probe
            every file and plan a full write (a first or a ``--full`` ingest).
        scan: the folder as just scanned: its listing and file stats are used instead of listing
            and stat'ing it again.

    Returns:
        The plan; its ``delta`` is set when ``known`` is not empty.
    """
    root = resolve_root(data_dir)
    rows, source_csv = read_metadata(data_dir)
    rejects: list[Reject] = []
    candidates = _check_rows(data_dir, root, rows, source_csv, rejects, scan)
    known = known or {}
    copies = root_folder(reduced_dir, root) if reduced_dir is not None else None
    recipe = probe_recipe(copies is not None)

    stats = scan.stats if scan is not None else None
    probes: list[ImageProbe | None] = []
    stat_of: list[FileStat | None] = []
    todo: list[int] = []
    changed_rows = 0
    for i, cand in enumerate(candidates):
        st = stats.get(cand.rel_path) if stats is not None else None
        if st is None:
            st = _stat(data_dir / cand.rel_path)
        stat_of.append(st)
        entry = known.get(cand.rel_path)
        if entry is None or entry.row_hash != cand.row_hash:
            changed_rows += 1
        reused = _reuse(entry, st, recipe, copies)
        probes.append(reused)
        if reused is None:
            todo.append(i)
    fresh = probe_all([data_dir / candidates[i].rel_path for i in todo],
                      _probe_workers(workers or default_workers(), [stat_of[i] for i in todo]), copies)
    for i, fresh_probe in zip(todo, fresh, strict=True):
        probes[i] = fresh_probe

    good: list[CatalogRow] = []
    files: list[FileRecord] = []
    stage: list[CatalogRow] = []
    changed_files: list[FileRecord] = []
    for cand, probe, st in zip(candidates, probes, stat_of, strict=True):
        assert probe is not None, "every candidate is probed or reused"
        entry = known.get(cand.rel_path)
        file_changed = True
        if st is not None:
            record = FileRecord(root, cand.rel_path, st.size, st.mtime_ns, cand.row_hash, recipe, probe)
            if entry is not None and entry == record:
                file_changed = False
                record = entry  # the same values: keep one object alive, not two
            else:
                changed_files.append(record)
            files.append(record)
        if probe.reason:
            rejects.append(Reject(root, source_csv, cand.row.line_no, cand.filename, probe.reason, probe.detail))
            continue
        good.append(_catalog_row(cand, root, source_csv, probe))
        # The catalog row is a function of the CSV row, the CSV's name, the path and the probe: when
        # none of them changed since the last ingest loaded it, it is already there as written.
        if file_changed or (entry is not None and entry.probe.reason):
            stage.append(good[-1])
    delta = None
    if known:
        now_good = {row.filename for row in good}
        now_files = {record.rel_path for record in files}
        was_good = {os.path.basename(rel) for rel, entry in known.items() if not entry.probe.reason}
        delta = PlanDelta(stage, changed_files, sorted(was_good - now_good), sorted(set(known) - now_files))
    return IngestPlan(good, rejects, source_csv, files, len(todo), changed_rows, delta)


def _check_rows(data_dir: Path, root: str, rows: list[CsvRow], source_csv: str, rejects: list[Reject],
                scan: FolderScan | None) -> list[_Candidate]:
    """The rows that pass every check short of decoding, each with its one file; the others are
    appended to ``rejects``."""
    links: set[str] = set()
    index = index_images(data_dir, links, scan.listing if scan is not None else None)
    seen: dict[str, int] = {}
    candidates: list[_Candidate] = []

    def reject(row: CsvRow, filename: str, reason: str, detail: str) -> None:
        rejects.append(Reject(root, source_csv, row.line_no, filename, reason, detail))

    for row in rows:
        fields = row.fields
        if fields is None:
            assert row.problem is not None, "an unreadable row says why"
            reject(row, "", row.problem.reason, row.problem.detail)
            continue
        raw_name = fields["new_filename"]
        # A name with a leading space or dot is taken as written when such a file exists.
        filename = raw_name if raw_name in index else raw_name.strip()
        numbers, bad_value = row_numbers(fields)
        if bad_value:
            # The file name itself may be the oversized value: keep what a reject row can show.
            reject(row, filename.replace("\x00", "")[:255], "bad_value", f"file line {row.file_line}: {bad_value}")
            continue
        unsafe = safe_name(filename)
        if unsafe:
            reject(row, filename, "unsafe_path", unsafe)
            continue
        if filename in seen:
            reject(row, filename, "duplicate_row", f"same file name as data row {seen[filename]}")
            continue
        seen[filename] = row.line_no
        if not fields["artist"].strip():
            reject(row, filename, "missing_artist", "artist is empty")
            continue
        found = index.get(filename)
        if not found:
            folders = ", ".join(d for d in IMAGE_DIRS if (data_dir / d).is_dir()) or "any image folder"
            reject(row, filename, "missing_file", f"not found in {folders}")
            continue
        if len(found) > 1:
            reject(row, filename, "ambiguous_file", f"the name is in {' and '.join(sorted(found))}; keep one")
            continue
        target = escapes(data_dir, found[0]) if found[0] in links else None
        if target:
            reject(row, filename, "unsafe_path", f"{found[0]} is a link to {target}, outside the data folder")
            continue
        candidates.append(_Candidate(row, fields, filename, found[0], numbers, row_hash(fields, source_csv)))
    return candidates


def _stat(path: Path) -> FileStat | None:
    """``path``'s size and mtime, taken before it is probed (a file written meanwhile then differs
    from the manifest next time); None when it cannot be stat'ed: probing names the problem."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    return FileStat(s.st_size, s.st_mtime_ns)


def _reuse(entry: FileRecord | None, st: FileStat | None, recipe: str, copies: Path | None) -> ImageProbe | None:
    """The manifest's probe outcome when the file is unchanged (same size and mtime, same recipe,
    its converted copy still there, in this ingest's copy folder), else None: probe it."""
    if entry is None or st is None or entry.recipe != recipe:
        return None
    if entry.size_bytes != st.size or entry.mtime_ns != st.mtime_ns:
        return None
    copy = entry.probe.reduced_path
    if copy and (copies is None or Path(copy).parent != copies or not os.path.isfile(copy)):
        return None
    return entry.probe


def _catalog_row(cand: _Candidate, root: str, source_csv: str, probe: ImageProbe) -> CatalogRow:
    """The ``paintings`` row of a candidate whose file decoded."""
    f, numbers = cand.fields, cand.numbers
    return CatalogRow(
        filename=cand.filename, artist=f["artist"].strip(), title=f["title"] or None, style=f["style"] or None,
        genre=f["genre"] or None, date=f["date"] or None, source=f["source"] or None,
        artist_group=f["artist_group"] or None, in_train=_IN_TRAIN.get(f["in_train"].strip().lower()),
        meta_width=numbers["pixelsx"], meta_height=numbers["pixelsy"], size_bytes=numbers["size_bytes"],
        data_root=root, rel_path=cand.rel_path, width=probe.width, height=probe.height, mode=probe.mode,
        source_csv=source_csv, reduced_path=probe.reduced_path, sha256=probe.sha256 or None, phash=probe.phash,
    )

