"""Rank an audit's label issues with cleanlab's confident learning.

The input is every audited painting's out-of-fold evidence (``audit_predictions``, see
:mod:`painting_ml.learn.audit`): the probabilities of the fold model that never saw it and the
vote shares of its nearest training paintings in that model's embedding space.
``cleanlab.filter.find_label_issues`` estimates, per class, the share a painting of that label must
reach to count as confidently that class (the class's mean self-confidence), counts the confident
disagreements into a joint of given vs. likely true artist, and flags the paintings counted off its
diagonal (``confident_learning``: confidently another artist than their label).

cleanlab judges the vote shares where the audit has them (every audit since migration 0016), the
probabilities otherwise. A fold model trained until it fits its training set is sure of nearly
every painting, so each artist's threshold sits near 1 and a wrong label its model plainly
disputes (0.9 for the true artist) can stay unflagged; the vote shares do not saturate. On five
catalogs of the label-noise benchmark the votes (grey paintings against grey views) found 48 of the
52 wrong labels in the training splits with 5 false flags, the probabilities 47 with 9
(docs/benchmarks.md, "Label noise").

Each audited painting gets a ``label_issues`` row: its quality (self-confidence: the share of its
catalog artist in the evidence cleanlab judged; low = suspicious), whether it is flagged, its rank
among the flagged (1 = most likely wrong: lowest quality, then lowest probability of its artist)
and the suggested artist (the strongest other artist, ties to the more probable). Ranking again
replaces the rows (and keeps rendered evidence).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import numpy as np
from numpy.typing import NDArray
from psycopg.types.json import Jsonb

from painting_ml.core import db
from painting_ml.core.errors import PaintingMLError

log = logging.getLogger(__name__)

#: cleanlab's settings, recorded in each audit's summary.
CLEANLAB_SETTINGS: dict[str, Any] = {"filter_by": "confident_learning", "quality_method": "self_confidence"}


def find_issues(labels: NDArray[np.int64], pred_probs: NDArray[np.float64],
                votes: NDArray[np.float64] | None = None) -> tuple[NDArray[np.int64], NDArray[np.float64],
                                                                   NDArray[np.int64]]:
    """cleanlab's verdict on out-of-fold evidence.

    Args:
        labels: the catalog's class id per painting.
        pred_probs: out-of-fold probabilities, one row per painting (rows sum to 1).
        votes: out-of-fold nearest-neighbour vote shares in the same layout, when the audit has
            them: cleanlab then judges these, and the probabilities break ties.

    Returns:
        ``(ranked, quality, suggested)``: the indexes of the flagged paintings, most likely wrong
        first; every painting's label-quality score; every painting's most probable other class.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    probs = _rows(pred_probs)  # float32 softmax rows, summed in float64
    evidence = probs if votes is None else _rows(np.asarray(votes, dtype=np.float64) + 1e-9)
    labels = np.asarray(labels, dtype=np.int64)
    flagged = np.asarray(find_label_issues(labels, evidence, filter_by=CLEANLAB_SETTINGS["filter_by"], n_jobs=1))
    flagged = np.flatnonzero(flagged)
    quality = np.asarray(get_label_quality_scores(labels, evidence, method=CLEANLAB_SETTINGS["quality_method"]))
    own = probs[np.arange(len(labels)), labels]
    ranked = flagged[np.lexsort((flagged, own[flagged], quality[flagged]))]
    others = evidence + 1e-3 * probs  # a vote share differs by at least 1/k: the probabilities only break ties
    others[np.arange(len(labels)), labels] = -1.0
    return ranked.astype(np.int64), quality, others.argmax(axis=1)


def _rows(values: Any) -> NDArray[np.float64]:
    out = np.asarray(values, dtype=np.float64)
    return out / out.sum(axis=1, keepdims=True)


def rank_label_issues(audit_id: int, url: str | None = None) -> dict[str, Any]:
    """Rank the audit's paintings, store ``label_issues`` and mark the audit ``ranked``.

    Returns:
        The audit's summary (also stored in ``audits.summary``): paintings audited and flagged,
        flagged per catalog artist, out-of-fold accuracy, seconds per fold, cleanlab's settings.

    Raises:
        PaintingMLError: the audit does not exist or some fold has no predictions yet.
    """
    from painting_ml.learn.audit import audit_info

    t0 = time.perf_counter()
    info = audit_info(audit_id, url)
    artists: list[str] = info["artists"]
    with db.connect(url) as conn:
        rows = db.fetch_dicts(conn, db.sql("audit", "predictions_of_audit"), {"id": audit_id})
        folds = db.fetch_dicts(conn, db.sql("audit", "fold_figures"), {"id": audit_id})
    waiting = [f["fold"] for f in folds if not f["predicted"]]
    if waiting or not rows:
        raise PaintingMLError(f"audit {audit_id}: fold(s) {waiting or list(range(info['folds']))} have no "
                              "out-of-fold predictions yet; run predict_fold for them first")
    index = {a: i for i, a in enumerate(artists)}
    labels = np.asarray([index[r["artist"]] for r in rows], dtype=np.int64)
    probs = np.asarray([r["probabilities"] for r in rows], dtype=np.float64)
    by_votes = all(r["neighbour_votes"] is not None for r in rows)
    votes = np.asarray([r["neighbour_votes"] for r in rows], dtype=np.float64) if by_votes else None
    ranked, quality, suggested = find_issues(labels, probs, votes)
    rank_of = {int(i): n + 1 for n, i in enumerate(ranked)}
    issues = [{"audit": audit_id, "root": r["data_root"], "file": r["filename"], "artist": r["artist"],
               "suggested": artists[int(suggested[n])], "quality": float(quality[n]), "issue": n in rank_of,
               "rank": rank_of.get(n)} for n, r in enumerate(rows)]
    flagged_by_artist = Counter(r["artist"] for n, r in enumerate(rows) if n in rank_of)
    summary = {
        "audited": len(rows), "flagged": len(ranked), "artists": len(artists),
        "flagged_by_artist": dict(sorted(flagged_by_artist.items())),
        "out_of_fold_accuracy": float((probs.argmax(axis=1) == labels).mean()),
        "folds": [{"fold": f["fold"], "run_id": f["run_id"], "paintings": f["paintings"], "epochs": f["epochs"],
                   "train_seconds": None if f["train_seconds"] is None else round(float(f["train_seconds"]), 2)}
                  for f in folds],
        "seconds_per_fold": _mean([f["train_seconds"] for f in folds]),
        "recipe": info["recipe"],
        "cleanlab": {**CLEANLAB_SETTINGS, "judged": "neighbour_votes" if by_votes else "probabilities",
                     "version": _cleanlab_version()},
    }
    with db.connect(url) as conn:
        with conn.cursor() as cur:
            cur.executemany(db.sql("audit", "upsert_issue"), issues)
        conn.execute(db.sql("audit", "delete_stale_issues"), {"audit": audit_id})
        summary["rank_seconds"] = round(time.perf_counter() - t0, 3)
        conn.execute(db.sql("audit", "finish_ranking"), {"id": audit_id, "summary": Jsonb(summary)})
    log.info("audit %d: %d of %d paintings flagged", audit_id, len(ranked), len(rows))
    return {"audit_id": audit_id, **summary}


def top_issues(audit_id: int, limit: int = 20, url: str | None = None) -> list[dict[str, Any]]:
    """The audit's flagged paintings by rank with both artists' out-of-fold probabilities."""
    with db.connect(url) as conn:
        return db.fetch_dicts(conn, db.sql("audit", "top_issues"), {"id": audit_id, "limit": limit})


def recent_audits(limit: int = 20, url: str | None = None) -> list[dict[str, Any]]:
    """The latest audits, newest first: status, folds, recipe, paintings audited and flagged."""
    with db.connect(url) as conn:
        return db.fetch_dicts(conn, db.sql("audit", "recent_audits"), {"limit": limit})


def _mean(values: list[Any]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return round(sum(known) / len(known), 2) if known else None


def _cleanlab_version() -> str:
    import cleanlab

    return str(cleanlab.__version__)
