"""A run's epoch rows, kept also beside its checkpoints so that none is lost to a database outage.

Each epoch's row is appended to ``<run folder>/backup/epochs.jsonl`` before that epoch's
checkpoint is written, and upserted into ``epochs`` after it. A training stopped in between (the
database down at the end of an epoch) resumes after that checkpoint, and :func:`reconcile` first
upserts every row of the file, so the table is complete. The file goes with the other scratch
files once the run is trained.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from painting_ml.core import db

log = logging.getLogger(__name__)

#: The history file, relative to the run folder (inside the checkpoint folder).
HISTORY = Path("backup") / "epochs.jsonl"


def append(run_dir: Path, row: dict[str, Any]) -> None:
    """Append one epoch's row (``epochs`` columns by name, ``metrics`` a plain dict), durably."""
    path = run_dir / HISTORY
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of the history file by epoch (a later line for an epoch wins); a line cut short
    by a killed process is skipped."""
    path = run_dir / HISTORY
    if not path.is_file():
        return []
    rows: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows[row["epoch"]] = row
    return [rows[e] for e in sorted(rows)]


def upsert(conn: db.Connection, row: dict[str, Any]) -> None:
    """Write one row into ``epochs`` and beat the run's heartbeat, in the caller's transaction."""
    conn.execute(db.sql("runs", "upsert_epoch"), {**row, "metrics": Jsonb(row["metrics"])})
    conn.execute(db.sql("runs", "beat"), {"id": row["run"]})


def reconcile(run_id: int, run_dir: Path, url: str | None = None) -> int:
    """Upsert every row of the run's history file into ``epochs``; return how many there were."""
    rows = [r for r in read(run_dir) if r.get("run") == run_id]
    if rows:
        with db.connect(url) as conn:
            for row in rows:
                upsert(conn, row)
        log.info("run %d: %d epoch row(s) reconciled from %s", run_id, len(rows), run_dir / HISTORY)
    return len(rows)
