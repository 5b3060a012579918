"""Ingest Painter-by-Numbers metadata and images into the painting database.

``ingest(data_dir)`` reads ``all_data_info.csv`` (or ``train_info.csv`` when that is all there is),
finds every referenced image in ``train/``, ``train_1``…``train_9`` (also Kaggle's nested
``train_1/train_1/``) and ``test/``, opens each one to record its decoded width, height and mode,
and loads the usable rows with PostgreSQL COPY. Every unusable row goes to ``rejects`` with its
reason; nothing is silently dropped, and running it again on the same data changes no counts.

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

The modules, by concern: :mod:`.rows` (the CSV and its row checks), :mod:`.scan` (the folder
walk, fingerprint and image index), :mod:`.plan` (what loads, what to decode, what changed),
:mod:`.load` (COPY, staging, gone-marking, the manifest) and :mod:`.records` (the row types and
their columns). This module runs them in order, bringing artist, style and genre to
their canonical names (:mod:`painting_ml.data.names`) before the rows load.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from painting_ml.core import db
from painting_ml.data.identity import update_duplicates
from painting_ml.data.images import ImageProbe, probe_image
from painting_ml.data.ingest.load import (
    LoadTotals,
    load_rows,
    lock_ingest,
    read_manifest,
    record_fingerprint,
    record_manifest,
    state_stamp,
    stored_fingerprint,
)
from painting_ml.data.ingest.plan import (
    THREADS_FROM_BYTES,
    IngestPlan,
    PlanDelta,
    default_workers,
    plan_ingest,
    probe_all,
)
from painting_ml.data.ingest.records import (
    FILE_COLUMNS,
    PAINTING_COLUMNS,
    REJECT_COLUMNS,
    CatalogRow,
    FileRecord,
    Reject,
)
from painting_ml.data.ingest.rows import OPTIONAL_COLUMNS, CsvRow, read_metadata
from painting_ml.data.ingest.scan import (
    IMAGE_DIRS,
    FileStat,
    FolderScan,
    index_images,
    resolve_root,
    scan_fingerprint,
    scan_folder,
)
from painting_ml.data.names import name_catalog, names_moved, read_aliases, record_names

__all__ = [
    "FILE_COLUMNS", "IMAGE_DIRS", "OPTIONAL_COLUMNS", "PAINTING_COLUMNS", "REJECT_COLUMNS", "THREADS_FROM_BYTES",
    "CatalogRow", "CsvRow", "FileRecord", "FileStat", "FolderScan", "ImageProbe", "IngestPlan", "IngestSummary",
    "LoadTotals", "PlanDelta", "Reject", "default_workers", "index_images", "ingest", "ingest_if_changed",
    "load_rows", "plan_ingest", "probe_all", "probe_image", "read_metadata", "record_manifest", "resolve_root",
    "scan_fingerprint", "scan_folder",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestSummary:
    """What one ingest did, and the data folder's counts afterwards."""

    source_csv: str
    rows: int
    loaded: int
    rejected: int
    paintings_total: int  # live paintings of this data folder after the ingest
    rejects_total: int    # rejects of this data folder
    gone: int = 0         # rows of this folder whose CSV line or file went away (marked gone or removed)
    probed: int = 0       # images decoded by this ingest (the rest were unchanged: manifest reused)
    changed_rows: int = 0  # CSV rows new or changed since the last ingest
    duplicate_groups: int = 0  # groups of copies of one picture in this data folder after the ingest

    def to_dict(self) -> dict[str, object]:
        """The summary as a JSON-ready dict (the CLI's output, the DAG task's XCom)."""
        return asdict(self)


def ingest(data_dir: str | Path, url: str | None = None, full: bool = False) -> IngestSummary:
    """Load ``data_dir`` into the painting database (idempotent, one transaction).

    Incremental: only images that are new or changed (by size and mtime) since the last ingest of
    the folder are decoded; ``full`` decodes every one again. The folder's fingerprint is recorded
    in the same transaction, so the next :func:`ingest_if_changed` sees no change.

    Args:
        data_dir: the Kaggle-layout data folder.
        url: the database (default: the configured one).
        full: decode every image and rewrite every row, whatever the manifest says.

    Returns:
        Counts of this ingest and of the tables afterwards.
    """
    root = resolve_root(data_dir)
    return _ingest_folder(Path(root), url, scan_folder(root), full)


def ingest_if_changed(data_dir: str | Path, url: str | None = None, full: bool = False) -> dict[str, object] | None:
    """Ingest ``data_dir`` only when its files changed since the last ingest of that folder: the
    one ingest path of the CLI and the DAG.

    The folder's fingerprint is the cheap "anything changed?" check; when it differs, the ingest
    decodes only new or changed images (:func:`ingest`). ``full`` ingests and decodes everything
    whatever the fingerprint says.

    Args:
        data_dir: the Kaggle-layout data folder.
        url: the database (default: the configured one).
        full: ingest and decode everything.

    Returns:
        The ingest summary with the folder's file count and fingerprint, or None when nothing
        changed (the fingerprint is stored in the ingest's own transaction, so a failed ingest is
        retried next time).
    """
    root = resolve_root(data_dir)
    scan = scan_folder(root)
    if not full:
        with db.connect(url) as conn:
            stored = stored_fingerprint(conn, root)
        if stored == scan.fingerprint:
            log.info("no change under %s (%d files); nothing to ingest", root, scan.files)
            return None
    summary = _ingest_folder(Path(root), url, scan, full).to_dict()
    return {**summary, "files": scan.files, "fingerprint": scan.fingerprint[:16]}


def _ingest_folder(data_dir: Path, url: str | None, scan: FolderScan, full: bool) -> IngestSummary:
    """Plan and load ``data_dir``; the ``scan``'s fingerprint and file count are recorded in
    ``ingest_state`` and the per-file manifest in ``ingest_files``, in the same transaction as the rows."""
    from painting_ml.core.settings import get_settings

    root = str(data_dir)
    aliases = read_aliases(get_settings().artist_aliases_file)
    known, stamp = None, None
    if not full:
        with db.connect(url) as conn:
            known = read_manifest(conn, root)
            stamp = state_stamp(conn, root)
    # Decoding happens here, before the transaction opens.
    plan = plan_ingest(data_dir, reduced_dir=get_settings().home / "reduced", known=known, scan=scan)
    names = name_catalog(plan.good, aliases)
    with db.connect(url) as conn:
        lock_ingest(conn)
        delta = plan.delta
        if delta is not None and state_stamp(conn, root) != stamp:
            delta = None  # another ingest of the folder committed since the manifest was read: write it all
        if delta is not None and names_moved(conn, root, names):
            delta = None  # an unchanged row's canonical name changed: write it all
        if delta is None:
            totals = load_rows(conn, names.apply(plan.good), plan.rejects, plan.source_csv, root)
            record_manifest(conn, root, plan.files)
        else:
            totals = load_rows(conn, names.apply(delta.stage), plan.rejects, plan.source_csv, root, delta.gone_names)
            record_manifest(conn, root, delta.files, delta.old_files)
        record_names(conn, root, names)
        # Only the new or changed paintings are searched against all (every one on a full load).
        duplicates = update_duplicates(conn, root, None if delta is None else [row.filename for row in delta.stage])
        record_fingerprint(conn, root, scan.fingerprint, scan.files)
    summary = IngestSummary(
        source_csv=plan.source_csv, rows=len(plan.good) + len(plan.rejects), loaded=len(plan.good),
        rejected=len(plan.rejects), paintings_total=totals.paintings_total, rejects_total=totals.rejects_total,
        gone=totals.gone, probed=plan.probed, changed_rows=plan.changed_rows,
        duplicate_groups=duplicates.groups)
    log.info("ingested %s: %d loaded, %d rejected; %d images decoded, %d rows new or changed",
             data_dir, summary.loaded, summary.rejected, summary.probed, summary.changed_rows)
    return summary
