"""Retention: which files of the artifact store are kept, and removing the rest (``painting-ml gc``,
the ``painting_gc`` DAG).

Database rows are history and stay: a run whose files are removed keeps its metrics, epochs,
predictions and lineage; ``runs.files_pruned_at`` says when its files went, and its ``artifacts``
rows (which list files) are deleted with the files. Dataset versions and their items stay too.

**Runs.** A run's folder (``runs.run_dir``) is kept when the run is

* the champion;
* one of the newest ``keep_runs`` runs (``PAINTING_KEEP_RUNS``, 10 by default; pruned ones count);
* referenced by a promotion decision (the candidate or the champion it was measured against) or
  by a champion change (``champion_changes``: a rollback needs the previous champion's model);
* in flight: ``running`` or ``trained`` (its evaluation has not run yet);
* recent: started or finished less than ``grace`` ago (a day by default), so a sweep's runs
  waiting for compare/promote are never pruned from under the gate.

Every other run's folder is deleted, except a file another run's rows name.

**Dataset files.** A dataset version is *live* while a run whose files are kept (or a run in
flight) used it, or for
:data:`LIVE_VERSION_FOR` (7 days) after it was made — it may be being augmented or waiting for its
training. Then gc removes

* *augmented* copies only non-live versions' rows name (those rows go too; the augment step makes
  them again if such a version is trained once more);
* *derived* copies (``image_cache``, ``derived/<long side>/…``) of paintings in no live version,
  with their ``image_cache`` rows;
* *reduced* copies (``$PAINTING_HOME/reduced``, converted at ingest or for ``predict``) that no
  ``paintings`` or ``ingest_files`` row names — this host's folder only;
* *orphans*: files under ``runs/``, ``augmented/`` and ``derived/`` that no row names (a run folder
  of a reset database, an augmentation that died before recording its rows).

Unreferenced files younger than ``grace`` are never removed: a writer puts its files first and
records them after (ingest, augmentation, the image cache), so a young unreferenced file may be
one about to be recorded.

**Concurrency.** Each run is pruned in its own short transaction under the promotion lock with its
row locked, after checking again that it is still unreferenced and not running: a promotion or
rollback that came after the plan keeps the run, and a retry of the same run waits for the
folder to be gone instead of writing into it. ``dry_run`` reads only.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from painting_ml.core import db, locks
from painting_ml.core.errors import ConfigError
from painting_ml.core.store import ArtifactStore, StoreError, get_store

log = logging.getLogger(__name__)

#: Unreferenced files and finished runs younger than this are left alone.
GRACE = timedelta(days=1)
#: A dataset version no kept run used stays live this long after it was made.
LIVE_VERSION_FOR = timedelta(days=7)
#: Store folders whose files every row is known for; anything else in the store is left alone.
_MANAGED_PREFIXES = ("runs/", "augmented/", "derived/")
KINDS = ("runs", "augmented", "derived", "reduced", "orphans")


class _Tally:
    """Files and bytes removed (or that would be), by kind."""

    def __init__(self) -> None:
        self.by_kind = {k: {"files": 0, "bytes": 0} for k in KINDS}

    def add(self, kind: str, sizes: list[int]) -> None:
        self.by_kind[kind]["files"] += len(sizes)
        self.by_kind[kind]["bytes"] += sum(sizes)

    @property
    def files(self) -> int:
        return sum(v["files"] for v in self.by_kind.values())

    @property
    def bytes(self) -> int:
        return sum(v["bytes"] for v in self.by_kind.values())


def collect_garbage(keep_runs: int, dry_run: bool = False, url: str | None = None,
                    grace: timedelta = GRACE, live_for: timedelta = LIVE_VERSION_FOR) -> dict[str, Any]:
    """Apply the retention policy (module docstring) to the artifact store and this host's
    reduced copies.

    Args:
        keep_runs: how many of the newest runs keep their files besides the champion, the runs
            promotions and champion changes name and the runs in flight (0: only those).
        dry_run: report what would go; delete nothing, change no row.
        url: the painting database (default: the configured one).
        grace: unreferenced files and finished runs younger than this are kept.
        live_for: how long a dataset version no kept run used stays live after it was made.

    Returns:
        ``{"dry_run", "runs_pruned": [ids], "files", "bytes", "by_kind": {kind: {"files",
        "bytes"}}, "kept_runs": [ids], "live_versions": [ids]}`` — ``runs_pruned`` are the runs
        whose files were (or would be) removed by this call; ``kept_runs`` the runs whose files
        stay (pruned before: in neither).

    Raises:
        ConfigError: ``keep_runs`` is negative.
    """
    if keep_runs < 0:
        raise ConfigError(f"keep_runs={keep_runs}: keep 0 or more runs (PAINTING_KEEP_RUNS, --keep-runs)")
    store = get_store()
    tally = _Tally()
    with db.connect(url) as conn:
        # Under the promotion lock, so the champion and the decisions read are one consistent state.
        conn.execute(db.sql("retention", "lock"), {"lock": locks.PROMOTION})
        runs = db.fetch_dicts(conn, db.sql("retention", "runs_with_reasons"), {"keep": keep_runs, "grace": grace})
    candidates = [r for r in runs if not r["reasons"] and r["files_pruned_at"] is None and r["run_dir"]]
    pruned = [r["id"] for r in candidates if _prune_run(r["id"], r["run_dir"], store, tally, dry_run, url)]
    kept = [r["id"] for r in runs if r["files_pruned_at"] is None and r["id"] not in pruned]

    with db.connect(url) as conn:
        live = [r["id"] for r in db.fetch_dicts(conn, db.sql("retention", "live_versions"),
                                                {"pruned": pruned, "live_for": live_for})]
    listing = {k: s for k, s in store.list().items() if k.startswith(_MANAGED_PREFIXES)}
    cutoff = (datetime.now(UTC) - grace).timestamp()
    removed = _sweep_augmented(live, listing, store, tally, dry_run, url)
    removed |= _sweep_derived(live, listing, store, tally, dry_run, grace, url)
    _sweep_orphans({k: s for k, s in listing.items() if k not in removed}, store, tally, dry_run, cutoff, url)
    _sweep_reduced(tally, dry_run, cutoff, url)
    report = {"dry_run": dry_run, "runs_pruned": pruned, "files": tally.files, "bytes": tally.bytes,
              "by_kind": tally.by_kind, "kept_runs": kept, "live_versions": live}
    log.info("gc%s: %d files, %d bytes; runs pruned %s; kept %s", " (dry run)" if dry_run else "",
             tally.files, tally.bytes, pruned, kept)
    return report


def _prune_run(run_id: int, run_dir: str, store: ArtifactStore, tally: _Tally, dry_run: bool,
               url: str | None) -> bool:
    """Delete one run's folder and mark the run pruned; False when a re-check keeps it."""
    prefix = run_dir.rstrip("/") + "/"
    with db.connect(url) as conn:
        conn.execute(db.sql("retention", "lock"), {"lock": locks.PROMOTION})
        if db.fetch_one(conn, db.sql("retention", "lock_run_to_prune"), {"id": run_id}) is None:
            return False  # promoted, rolled back to, retried or pruned since the plan was made
        protected = {r["key"] for r in db.fetch_dicts(conn, db.sql("retention", "keys_kept_by_other_runs"),
                                                      {"id": run_id, "prefix": prefix})}
        files = {k: s for k, s in store.list(run_dir).items() if k not in protected}
        tally.add("runs", list(files.values()))
        if dry_run:
            return True
        # Deleting a run's few files is quick; doing it with the row locked is what makes a retry
        # of this run wait instead of writing checkpoints into a folder being deleted.
        if protected:
            store.delete(files)
        else:
            store.delete_prefix(run_dir)
        conn.execute(db.sql("retention", "delete_run_artifacts"), {"id": run_id})
        conn.execute(db.sql("retention", "mark_pruned"), {"id": run_id})
    log.info("gc: run %d's files removed (%d files, %d bytes)", run_id, len(files), sum(files.values()))
    return True


def _as_key(store: ArtifactStore, path: str | None) -> str | None:
    """The store key a row names, which may be a host path under the store's folder instead."""
    if not path:
        return None
    if not path.startswith("/"):
        return path
    try:
        return store.key_of(path)
    except StoreError:
        return None  # a file outside the store: not gc's to remove


def _sweep_augmented(live: list[int], listing: dict[str, int], store: ArtifactStore, tally: _Tally,
                     dry_run: bool, url: str | None) -> set[str]:
    """Remove augmented copies only non-live versions name, and those versions' rows; the keys."""
    live_set = set(live)
    with db.connect(url) as conn:
        rows = db.fetch_dicts(conn, db.sql("retention", "augmented_rows"))
    keep = {_as_key(store, r["path"]) for r in rows if r["version_id"] in live_set}
    dead_versions = sorted({r["version_id"] for r in rows if r["version_id"] not in live_set})
    gone = sorted({k for r in rows if r["version_id"] not in live_set
                   for k in [_as_key(store, r["path"])] if k and k not in keep and k in listing})
    tally.add("augmented", [listing[k] for k in gone])
    if not dry_run and dead_versions:
        with db.connect(url) as conn:
            conn.execute(db.sql("retention", "delete_augmented_rows"), {"versions": dead_versions})
        store.delete(gone)
    return set(gone)


def _sweep_derived(live: list[int], listing: dict[str, int], store: ArtifactStore, tally: _Tally,
                   dry_run: bool, grace: timedelta, url: str | None) -> set[str]:
    """Remove derived copies of paintings in no live version, with their image_cache rows; the keys."""
    with db.connect(url) as conn:
        rows = db.fetch_dicts(conn, db.sql("retention", "image_cache_rows"), {"live": live, "grace": grace})
    dead = [r for r in rows if not r["live"] and r["old"]]
    keep = {r["key"] for r in rows if r["live"] or not r["old"]}
    gone = sorted({r["key"] for r in dead if r["key"] not in keep and r["key"] in listing})
    tally.add("derived", [listing[k] for k in gone])
    if not dry_run and dead:
        with db.connect(url) as conn:
            conn.execute(db.sql("retention", "delete_image_cache_rows"), {
                "roots": [r["data_root"] for r in dead], "rels": [r["rel_path"] for r in dead],
                "sides": [r["long_side"] for r in dead]})
        store.delete(gone)
    return set(gone)


def _sweep_orphans(listing: dict[str, int], store: ArtifactStore, tally: _Tally, dry_run: bool,
                   cutoff: float, url: str | None) -> None:
    """Remove store files under runs/, augmented/ and derived/ that no row names, once past grace
    (``listing``: the store's files less what the other sweeps removed)."""
    with db.connect(url) as conn:
        run_dirs = {r["run_dir"].rstrip("/") for r in db.fetch_dicts(conn, db.sql("retention", "run_dirs"))}
        named = {_as_key(store, r["path"]) for r in db.fetch_dicts(conn, db.sql("retention", "augmented_rows"))}
        named |= {r["key"] for r in db.fetch_dicts(conn, db.sql("retention", "image_cache_keys"))}
    orphans: list[str] = []
    for key in sorted(listing):
        if key.startswith("runs/"):
            parts = key.split("/")
            if any("/".join(parts[:i]) in run_dirs for i in range(2, len(parts))):
                continue
        elif key in named:
            continue
        if _modified(store, key) < cutoff:
            orphans.append(key)
    tally.add("orphans", [listing[k] for k in orphans])
    if not dry_run:
        store.delete(orphans)


def _modified(store: ArtifactStore, key: str) -> float:
    """When ``key`` was last written (POSIX seconds); +inf when it is gone meanwhile (nothing to remove)."""
    try:
        return store.modified(key)
    except FileNotFoundError:
        return float("inf")


def _sweep_reduced(tally: _Tally, dry_run: bool, cutoff: float, url: str | None) -> None:
    """Remove this host's converted copies no catalog or manifest row names, once past grace."""
    from painting_ml.core.settings import get_settings

    folder = get_settings().home / "reduced"
    if not folder.is_dir():
        return
    with db.connect(url) as conn:
        named = {os.path.realpath(r["path"]) for r in db.fetch_dicts(conn, db.sql("retention", "reduced_paths"))}
    gone: list[Path] = []
    sizes: list[int] = []
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = Path(dirpath) / name
            st = path.stat()
            if st.st_mtime < cutoff and os.path.realpath(path) not in named:
                gone.append(path)
                sizes.append(st.st_size)
    tally.add("reduced", sizes)
    if not dry_run:
        for path in gone:
            path.unlink(missing_ok=True)

