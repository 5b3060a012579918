"""The artifact registry: every file a run produces (model, plots, mosaics, report) is recorded in
``artifacts`` with its store key, size and sha256, so SQL can list what a run made and prove it
unchanged. Recording a file also puts it in the artifact store (an upload when the store is
remote), so another host can read it. Re-recording a key replaces its row.

A run's files are written under :func:`run_folder` — the store itself for the local store, this
host's scratch copy of the run's folder for a remote one — and :func:`fetch_run_files` brings a
run's recorded files to this host (the report step reads plots and mosaics other hosts made).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from painting_ml.core import db
from painting_ml.core.store import get_store


def file_sha256(path: str | Path) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in 1 MiB chunks (a model is hundreds of MB)."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


def record_artifact(conn: db.Connection, run_id: int, kind: str, path: Path) -> str:
    """Put ``path`` (a file under a run folder) in the store and record it as an artifact of
    ``run_id`` on ``conn``'s transaction; returns its key."""
    store = get_store()
    key = store.key_of(path)
    size, sha = file_sha256(path)
    store.put(key, path)
    conn.execute(db.sql("runs", "upsert_artifact"),
                 {"run": run_id, "kind": kind, "path": key, "bytes": size, "sha": sha})
    return key


def run_folder(run_dir_key: str) -> Path:
    """The local folder of the run whose ``runs.run_dir`` is ``run_dir_key`` (created)."""
    folder = get_store().local_path(run_dir_key)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fetch_run_files(run_id: int, url: str | None = None, kinds: tuple[str, ...] = ()) -> list[Path]:
    """Bring the recorded files of ``run_id`` (only ``kinds`` when given) to this host; their paths."""
    with db.connect(url) as conn:
        rows = db.fetch_dicts(conn, db.sql("runs", "artifacts_of_run"), {"id": run_id})
    keys = [r["path"] for r in rows if not kinds or r["kind"] in kinds]
    store = get_store()
    if store.is_local:  # the files are here already (or were removed by gc)
        return [p for p in map(store.local_path, keys) if p.is_file()]
    return store.fetch_many(keys)
