"""A training run's row when its training did not finish: marked failed with the error.

No Keras here: the train task's failure callback (which may run in the scheduler's callback
process after a worker died) imports this without paying for TensorFlow.
"""

from __future__ import annotations

import logging

from painting_ml.core import db

log = logging.getLogger(__name__)


def mark_run_failed(run_key: str, error: BaseException | str, url: str | None = None) -> int | None:
    """Mark the run ``run_key`` failed with the error (type and message), if it is still
    'running' (a retry of the same key sets it back to running and resumes from its checkpoint).
    Returns the run id, or None when there was nothing to mark."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}".strip().rstrip(":")
    with db.connect(url) as conn:
        row = db.fetch_one(conn, db.sql("runs", "fail_run"), {"key": run_key, "error": text.strip()[:2000]})
    if row:
        log.error("run %s (%s) marked failed: %s", row["id"], run_key, text.strip()[:500])
    return int(row["id"]) if row else None
