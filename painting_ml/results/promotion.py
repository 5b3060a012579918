"""The promotion gate: a new model becomes champion only if it is good enough on its own, at least
as good as the current one on the same dataset version, and no artist got much worse.

Rules, in order (each gives a reason, stored with the decision):
  * the floor: a candidate whose test macro-F1 is under ``min_macro_f1`` is never promoted, even
    when there is no champion;
  * no champion yet → promote;
  * the champion was trained on a different artist set → not promoted (the two cannot be scored
    on the same test paintings), unless the Param ``allow_artist_set_change`` is set, which says
    a person means to replace the artist set; the reason says which;
  * otherwise the champion is scored on the candidate's dataset version (its stored metrics when
    it is the same version, else its model is run on the candidate's test split), and the
    candidate is promoted only if its test macro-F1 >= the champion's and no artist's recall
    drops by more than ``max_recall_drop`` points.

The decision row, the champion pointer and the champion history row
(:mod:`painting_ml.results.registry`) are written in one transaction under an advisory lock, so
two runs finishing at once cannot both replace the champion from the same baseline.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

from painting_ml.core import db, locks
from painting_ml.core.errors import PaintingMLError
from painting_ml.results.registry import GATE, record_champion_change

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scores:
    macro_f1: float
    recall: dict[str, float] = field(default_factory=dict)


@dataclass
class Decision:
    run_id: int
    promoted: bool
    reasons: list[str]
    candidate_f1: float | None = None
    champion_f1: float | None = None
    champion_run_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def below_floor(candidate: Scores, min_macro_f1: float) -> str | None:
    """The reason a candidate is refused by the absolute floor, or None when it clears it."""
    if candidate.macro_f1 < min_macro_f1:
        return (f"macro-F1 {candidate.macro_f1:.3f} is under the floor min_macro_f1 = {min_macro_f1:.3f}: "
                "never promoted, with or without a champion")
    return None


def decide(candidate: Scores, champion: Scores | None, max_recall_drop: float,
           min_macro_f1: float = 0.0) -> tuple[bool, list[str]]:
    """Pure gate logic; ``max_recall_drop`` is in percentage points, ``min_macro_f1`` is the floor
    every candidate must reach first."""
    refused = below_floor(candidate, min_macro_f1)
    if refused:
        return False, [refused]
    if champion is None:
        return True, ["no champion yet: the first evaluated model becomes champion"]
    reasons: list[str] = []
    ok = True
    if candidate.macro_f1 >= champion.macro_f1:
        reasons.append(f"macro-F1 {candidate.macro_f1:.3f} >= champion's {champion.macro_f1:.3f}")
    else:
        ok = False
        reasons.append(f"macro-F1 {candidate.macro_f1:.3f} < champion's {champion.macro_f1:.3f}")
    drops = []
    for artist in sorted(set(candidate.recall) & set(champion.recall)):
        drop = (champion.recall[artist] - candidate.recall[artist]) * 100
        if drop > max_recall_drop + 1e-9:
            drops.append(f"recall of {artist} fell {drop:.1f} points ({champion.recall[artist]:.3f} -> "
                         f"{candidate.recall[artist]:.3f}), more than the {max_recall_drop:g} allowed")
    if drops:
        ok = False
        reasons += drops
    else:
        reasons.append(f"no artist's recall fell more than {max_recall_drop:g} points")
    return ok, reasons


def stored_scores(conn: db.Connection, run_id: int) -> Scores:
    rows = db.fetch_dicts(conn, db.sql("promotion", "artist_recall"), {"id": run_id})
    f1 = db.fetch_one(conn, db.sql("promotion", "run_f1"), {"id": run_id})
    macro_f1 = float(f1["macro_f1"]) if f1 and f1["macro_f1"] is not None else 0.0
    return Scores(macro_f1, {r["artist"]: float(r["recall"]) for r in rows})


def score_on_version(run_id: int, version_id: int, url: str | None = None) -> Scores:
    """Run ``run_id``'s model on the test split of another dataset version (same artists)."""
    import numpy as np

    from painting_ml.data.versions import load_items
    from painting_ml.learn.inference import infer, load_run_model
    from painting_ml.learn.metrics import compute_class_metrics

    rm = load_run_model(run_id, url)
    _, items = load_items(version_id, url, history=True)
    test = [i for i in items if i.split == "test" and not i.gone]  # what is still in the folder
    names = rm.classes["artist"]
    index = {a: k for k, a in enumerate(names)}
    y = np.array([index.get(i.artist, -1) for i in test])
    pred = infer(rm, [i.path for i in test])["artist"].argmax(axis=1)
    rows = compute_class_metrics(y, pred, names)
    return Scores(float(np.mean([r["f1"] for r in rows])), {r["label"]: r["recall"] for r in rows})


@dataclass
class _Comparison:
    """What the gate compares, gathered before the lock is taken."""

    version_id: int
    candidate: Scores
    champion_id: int | None
    champion: Scores | None
    reasons_prefix: list[str]
    artist_set_changed: bool = False
    already_champion: bool = False     # set by hand before the gate decided it


def _gather(run_id: int, url: str | None, min_macro_f1: float = 0.0) -> _Comparison | Decision:
    """Read the candidate and the current champion and score the champion on the candidate's
    dataset version when needed. Loading a model and predicting is slow, so it happens here,
    outside any transaction or lock (and not at all for a candidate under the floor)."""
    with db.connect(url) as conn:
        existing = db.fetch_dicts(conn, db.sql("promotion", "decision_of_run"), {"id": run_id})
        if existing:
            return Decision(**existing[0])
        cand = db.fetch_one(conn, db.sql("promotion", "run_info"), {"id": run_id})
        if not cand or cand["status"] != "evaluated":
            raise PaintingMLError(f"run {run_id} is not evaluated; run `painting-ml evaluate --run-id {run_id}` first")
        candidate = stored_scores(conn, run_id)
        champ_row = db.fetch_one(conn, db.sql("runs", "current_champion"))
        champion_id = int(champ_row["run_id"]) if champ_row and champ_row["run_id"] != run_id else None
        champ: dict[str, Any] | None = None
        champion: Scores | None = None
        if champion_id:
            champ = db.fetch_one(conn, db.sql("promotion", "run_info"), {"id": champion_id})
            if champ and champ["version_id"] == cand["version_id"]:
                champion = stored_scores(conn, champion_id)
    comparison = _Comparison(cand["version_id"], candidate, champion_id, champion, [],
                             already_champion=champ_row is not None and champ_row["run_id"] == run_id)
    if champion_id and champ and champion is None:
        if sorted(champ["artists"]) == sorted(cand["artists"]):
            if below_floor(candidate, min_macro_f1):
                return comparison  # refused whatever the champion scores: spare loading its model
            comparison.champion = score_on_version(champion_id, cand["version_id"], url)
            comparison.reasons_prefix.append(
                f"champion run {champion_id} re-scored on dataset version {cand['version_id']}")
        else:
            comparison.artist_set_changed = True
            comparison.reasons_prefix.append(f"artist set differs from champion run {champion_id}'s; they cannot "
                                             "be scored on the same test paintings")
    return comparison


def _judge(gathered: _Comparison, max_recall_drop: float, min_macro_f1: float,
           allow_artist_set_change: bool) -> tuple[bool, list[str]]:
    """The rules of the module docstring, in order, on a gathered comparison."""
    refused = below_floor(gathered.candidate, min_macro_f1)
    if refused:
        return False, [refused] + gathered.reasons_prefix
    if gathered.already_champion:
        return True, [f"run already champion (set by hand before the gate decided it); macro-F1 "
                      f"{gathered.candidate.macro_f1:.3f} clears the floor {min_macro_f1:.3f}"]
    if gathered.artist_set_changed:
        if not allow_artist_set_change:
            return False, gathered.reasons_prefix + [
                "a changed artist set is promoted only on purpose: not promoted, because the Param "
                "allow_artist_set_change is off (trigger again with allow_artist_set_change=true, or set the "
                "champion by hand with `painting-ml champion --set`)"]
        return True, gathered.reasons_prefix + [
            f"macro-F1 {gathered.candidate.macro_f1:.3f} clears the floor {min_macro_f1:.3f} and the Param "
            "allow_artist_set_change is on: the new artist set replaces the champion's"]
    promoted, reasons = decide(gathered.candidate, gathered.champion, max_recall_drop)
    return promoted, gathered.reasons_prefix + reasons


def promote(run_id: int, max_recall_drop: float = 5.0, url: str | None = None, attempts: int = 3, *,
            min_macro_f1: float = 0.0, allow_artist_set_change: bool = False) -> Decision:
    """Decide whether evaluated run ``run_id`` becomes champion; store and return the decision.

    The comparison is prepared without a lock (:func:`_gather`); the decision is then written in
    one short transaction under the promotion lock, and only if the champion is still the one
    compared against — otherwise the comparison is prepared again. Idempotent: a run is decided
    once; asking again returns the stored decision.

    Args:
        run_id: an evaluated run.
        max_recall_drop: points any artist's recall may fall against the champion.
        url: the painting database (default: the configured one).
        attempts: how many times to re-gather when the champion changes meanwhile.
        min_macro_f1: the floor; a candidate under it is never promoted.
        allow_artist_set_change: promote a candidate trained on another artist set than the
            champion's (when it clears the floor); off, such a candidate is recorded, not promoted.

    Returns:
        The decision, with its reasons.
    """
    for _ in range(attempts):
        gathered = _gather(run_id, url, min_macro_f1)
        if isinstance(gathered, Decision):
            return gathered
        with db.connect(url) as conn:
            conn.execute(db.sql("promotion", "lock"), {"lock": locks.PROMOTION})
            existing = db.fetch_dicts(conn, db.sql("promotion", "decision_of_run"), {"id": run_id})
            if existing:
                return Decision(**existing[0])
            champ_row = db.fetch_one(conn, db.sql("runs", "current_champion"))
            pointer = int(champ_row["run_id"]) if champ_row else None
            champion_now = pointer if pointer != run_id else None
            if champion_now != gathered.champion_id or (pointer == run_id) != gathered.already_champion:
                continue  # another promotion won the race while we scored: compare against the new champion
            champion = gathered.champion
            promoted, reasons = _judge(gathered, max_recall_drop, min_macro_f1, allow_artist_set_change)
            decision = Decision(run_id, promoted, reasons, gathered.candidate.macro_f1,
                                champion.macro_f1 if champion else None, gathered.champion_id)
            conn.execute(db.sql("promotion", "insert_decision"), {
                "run": run_id, "version": gathered.version_id, "champion": gathered.champion_id,
                "cf1": decision.candidate_f1, "hf1": decision.champion_f1, "promoted": promoted,
                "reasons": Jsonb(decision.reasons)})
            if promoted and pointer != run_id:
                record_champion_change(conn, run_id, pointer, "promote", GATE, "; ".join(decision.reasons))
            break
    else:
        raise PaintingMLError(f"run {run_id}: the champion changed {attempts} times while the gate compared; "
                              "rerun the promotion")
    log.info("run %d %s: %s", run_id, "promoted" if promoted else "not promoted", "; ".join(decision.reasons))
    return decision
