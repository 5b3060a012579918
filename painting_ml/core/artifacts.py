"""The artifact registry: every file a run produces (model, plots, mosaics, report) is recorded in
``artifacts`` with its size and sha256, so SQL can list what a run made and prove it unchanged.
Re-recording a path replaces its row."""

from __future__ import annotations

import hashlib
from pathlib import Path

from painting_ml.core import db


def record_artifact(conn, run_id: int, kind: str, path: Path) -> None:
    """Record (or re-record) ``path`` as an artifact of ``run_id`` on ``conn``'s transaction."""
    data = Path(path).read_bytes()
    conn.execute(db.sql("runs", "upsert_artifact"), {
        "run": run_id, "kind": kind, "path": str(path), "bytes": len(data), "sha": hashlib.sha256(data).hexdigest(),
    })
