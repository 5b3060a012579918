"""The model registry: which run is champion, how it became champion, and the two ways a person
moves it without the gate — set a run as champion, or roll back to the champion before.

Every move of the champion pointer (the gate's promotions too, see
:mod:`painting_ml.results.promotion`) writes one ``champion_changes`` row — the new and the
previous champion, the action, who and why — in the same transaction as the pointer, under the
promotion lock, so the history and the pointer never disagree and a manual change cannot
interleave with a gate decision.

Rollback walks that history like a stack: it returns to the ``previous_run_id`` of the latest
promotion or set that made the current champion (a rollback's own row is skipped), so rolling
back twice after A → B → C gives B, then A.

Moving the pointer here does not publish the Airflow ``champion`` Asset: re-score the catalog
with ``painting-ml attribute`` (or trigger painting_attribute) and re-export the serving model.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from painting_ml.core import db, locks
from painting_ml.core.errors import PaintingMLError

log = logging.getLogger(__name__)

#: ``who`` of the changes the promotion gate makes.
GATE = "promotion gate"
_MAX_WHO, _MAX_WHY = 200, 2000


class RegistryError(PaintingMLError):
    """A champion change cannot be made as asked (unknown or unevaluated run, nothing to roll back to)."""


@dataclass(frozen=True)
class ChampionChange:
    """One move of the champion pointer."""

    id: int
    run_id: int
    previous_run_id: int | None
    action: str            # promote / set / rollback
    who: str
    why: str
    changed_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed_at": self.changed_at.isoformat()}


def _text(value: str | None, what: str, limit: int) -> str:
    text = " ".join((value or "").split())  # one line: it is shown in tables and log lines
    if not text:
        raise RegistryError(f"a champion change needs {what} (--{what} TEXT)")
    if len(text) > limit:
        raise RegistryError(f"{what} is {len(text)} characters; keep it to {limit}")
    return text


def record_champion_change(conn: db.Connection, run_id: int, previous_run_id: int | None, action: str, who: str,
                           why: str) -> ChampionChange:
    """Point the champion at ``run_id`` and record the move.

    The caller holds the promotion lock in ``conn``'s transaction (that is what keeps the pointer
    and the history in step); this only writes.
    """
    conn.execute(db.sql("promotion", "set_champion"), {"run": run_id})
    row = db.fetch_one(conn, db.sql("promotion", "record_change"), {
        "run": run_id, "previous": previous_run_id, "action": action, "who": who, "why": why}, required=True)
    return ChampionChange(**row)


def _current(conn: db.Connection) -> int | None:
    row = db.fetch_one(conn, db.sql("runs", "current_champion"))
    return int(row["run_id"]) if row else None


def _lock(conn: db.Connection) -> None:
    conn.execute(db.sql("promotion", "lock"), {"lock": locks.PROMOTION})


def set_champion(run_id: int, who: str, why: str, url: str | None = None) -> ChampionChange:
    """Make evaluated run ``run_id`` the champion by hand, bypassing the gate.

    Args:
        run_id: an existing run with status ``evaluated``.
        who: the person (or tool) making the change.
        why: the reason, kept in the history.
        url: the painting database (default: the configured one).

    Returns:
        The recorded change.

    Raises:
        RegistryError: the run does not exist, is not evaluated, or is already the champion.
    """
    who, why = _text(who, "who", _MAX_WHO), _text(why, "why", _MAX_WHY)
    with db.connect(url) as conn:
        _lock(conn)
        run = db.fetch_one(conn, db.sql("promotion", "run_info"), {"id": run_id})
        if run is None:
            raise RegistryError(f"run {run_id} does not exist; `painting-ml runs` lists the runs")
        if run["status"] != "evaluated":
            raise RegistryError(f"run {run_id} is {run['status']}, not evaluated; only an evaluated run can be "
                                f"champion (`painting-ml evaluate --run-id {run_id}`)")
        if run["files_pruned_at"] is not None:
            raise RegistryError(f"run {run_id}'s model was removed by gc on {run['files_pruned_at']:%Y-%m-%d}; "
                                "it cannot be champion (retrain it, or pick a run `painting-ml runs --json` lists "
                                "with its files)")
        previous = _current(conn)
        if previous == run_id:
            raise RegistryError(f"run {run_id} is already the champion; nothing changed")
        change = record_champion_change(conn, run_id, previous, "set", who, why)
    log.info("champion set to run %d (was %s) by %s: %s", run_id, previous, who, why)
    return change


def rollback_champion(who: str, why: str, url: str | None = None) -> ChampionChange:
    """Return the champion to the one before it, per the history.

    Args:
        who: the person (or tool) making the change.
        why: the reason, kept in the history.
        url: the painting database (default: the configured one).

    Returns:
        The recorded change (its ``run_id`` is the restored champion).

    Raises:
        RegistryError: there is no champion, or no earlier champion recorded before it.
    """
    who, why = _text(who, "who", _MAX_WHO), _text(why, "why", _MAX_WHY)
    with db.connect(url) as conn:
        _lock(conn)
        current = _current(conn)
        if current is None:
            raise RegistryError("there is no champion to roll back; promote a run first "
                                "(`painting-ml promote --run-id N`)")
        made_by = db.fetch_one(conn, db.sql("promotion", "change_that_made"), {"run": current})
        if made_by is None or made_by["previous_run_id"] is None:
            raise RegistryError(f"champion run {current} has no earlier champion in the history to roll back to; "
                                "choose one with `painting-ml champion --set RUN_ID --why TEXT`")
        target = int(made_by["previous_run_id"])
        change = record_champion_change(conn, target, current, "rollback", who, why)
    log.info("champion rolled back from run %d to run %d by %s: %s", current, target, who, why)
    return change


def champion_history(url: str | None = None, *, limit: int | None = None) -> list[ChampionChange]:
    """Every move of the champion pointer, newest first (the newest ``limit`` when given)."""
    with db.connect(url) as conn:
        rows = db.fetch_dicts(conn, db.sql("promotion", "champion_changes"), {"limit": limit})
    return [ChampionChange(**r) for r in rows]


def champion_info(url: str | None = None) -> dict[str, Any] | None:
    """The current champion with its headline figures and since when, or None."""
    with db.connect(url) as conn:
        row = db.fetch_one(conn, db.sql("promotion", "champion_info"))
    if row is None:
        return None
    return {**row, "since": row["since"].isoformat()}
