"""A run's row whatever stops it: one live attempt per run key, the lost-run sweep, the stopped
state written through a database outage, the epoch history beside the checkpoints."""

from __future__ import annotations

import os

import psycopg
import pytest

from painting_ml.core import db
from painting_ml.core.errors import ConfigError, DatabaseError
from painting_ml.core.interrupts import Interrupted
from painting_ml.core.settings import reload_settings
from painting_ml.learn import epoch_history, run_status
from painting_ml.learn.run_status import RunKeyBusy, RunLease, hold_run_key, mark_run_stopped, sweep_lost_runs

pytestmark = pytest.mark.db


def _runs(url: str, **rows: str) -> dict[str, int]:
    """Insert runs by key, each ``status`` with a heartbeat ``age`` ago ("status:age"); their ids."""
    with psycopg.connect(url) as conn:
        version = conn.execute("INSERT INTO dataset_versions (content_hash, config, artists, artist_counts) "
                               "VALUES ('h', '{}', '[]', '{}') RETURNING id").fetchone()[0]
        insert = ("INSERT INTO runs (run_key, dataset_version_id, config, run_dir, status, heartbeat_at) "
                  "VALUES (%s, %s, '{}', '', %s, now() - %s::interval) RETURNING id")
        return {key: conn.execute(insert, (key, version, *spec.split(":"))).fetchone()[0] for key, spec in rows.items()}


def _status(url: str, key: str) -> tuple[str, str | None]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT status, error FROM runs WHERE run_key = %s", (key,)).fetchone()


def test_one_live_attempt_per_run_key(clean_db):
    with hold_run_key("k1", clean_db) as lease:
        with hold_run_key("k1", clean_db) as again:  # re-entrant within the process
            assert again is lease
        with pytest.raises(RunKeyBusy, match=rf"run key 'k1' is being trained by another process "
                                             rf"\(painting-ml pid {os.getpid()} on .*rerun with the same key"):
            RunLease("k1", clean_db).acquire()
        RunLease("k2", clean_db).acquire()  # another key is free
    other = RunLease("k1", clean_db)
    other.acquire()  # given back when the block ended
    other.release()


def test_the_sweep_marks_only_silent_unheld_runs_lost(clean_db):
    ids = _runs(clean_db, silent="running:2 hours", held="running:2 hours", beating="running:1 minute",
                failed="failed:2 hours")
    with hold_run_key("held", clean_db):
        assert sweep_lost_runs(clean_db, minutes=30) == [ids["silent"]]
    status, error = _status(clean_db, "silent")
    assert status == "lost" and error.startswith("lost: no heartbeat for over 30 minutes and no process holds")
    assert [_status(clean_db, k)[0] for k in ("held", "beating", "failed")] == ["running", "running", "failed"]
    assert sweep_lost_runs(clean_db, minutes=30) == [ids["held"]]  # released: now it is silent and unheld


def test_a_heartbeat_keeps_a_run_from_the_sweep(clean_db):
    ids = _runs(clean_db, alive="running:2 hours")
    with hold_run_key("alive", clean_db) as lease:
        lease.attach(ids["alive"])  # beats now (and every minute from its thread)
    assert sweep_lost_runs(clean_db, minutes=30) == []


def test_the_stopped_state_is_written_through_an_outage(clean_db, monkeypatch):
    _runs(clean_db, cut="running:1 minute")
    real_connect, failures, waits = db.connect, [2], []

    def flaky(url=None, **kw):
        if failures[0]:
            failures[0] -= 1
            raise DatabaseError("cannot connect to the painting database postgresql://x:***@h/db: refused")
        return real_connect(url, **kw)

    monkeypatch.setattr(db, "connect", flaky)
    assert mark_run_stopped("cut", Interrupted(15), clean_db, sleep=waits.append) is not None
    assert waits == [1.0, 2.0] and _status(clean_db, "cut") == ("interrupted", "interrupted by SIGTERM")


def test_a_stopped_state_that_never_gets_through_leaves_the_row_to_the_sweep(clean_db, monkeypatch):
    _runs(clean_db, gone="running:1 minute")

    def down(url=None, **kw):
        raise DatabaseError("cannot connect")

    monkeypatch.setattr(db, "connect", down)
    waits: list[float] = []
    assert mark_run_stopped("gone", RuntimeError("boom"), clean_db, sleep=waits.append) is None
    assert sum(waits) == pytest.approx(30)
    monkeypatch.undo()
    assert _status(clean_db, "gone") == ("running", None)


def test_a_live_attempt_is_never_marked_by_another(clean_db):
    _runs(clean_db, busy="running:1 minute")
    with hold_run_key("busy", clean_db):  # e.g. the failure callback of a refused retry
        assert run_status.mark_run_failed("busy", "RunKeyBusy: refused", clean_db) is None
    assert _status(clean_db, "busy") == ("running", None)
    assert run_status.mark_run_failed("busy", ValueError("bad"), clean_db) is not None
    assert _status(clean_db, "busy") == ("failed", "ValueError: bad")


@pytest.mark.unit
@pytest.mark.parametrize(("raw", "minutes"), [("", 10.0), ("2.5", 2.5), (" 60 ", 60.0)])
def test_lost_after_minutes_reads_the_environment(monkeypatch, raw, minutes):
    monkeypatch.setenv("PAINTING_LOST_AFTER_MINUTES", raw)
    try:
        reload_settings()
        assert run_status.lost_after_minutes() == minutes
    finally:
        monkeypatch.undo()
        reload_settings()


@pytest.mark.unit
@pytest.mark.parametrize("raw", ["0", "-1", "soon", "nan"])
def test_a_bad_lost_after_minutes_is_one_line(monkeypatch, raw):
    monkeypatch.setenv("PAINTING_LOST_AFTER_MINUTES", raw)
    try:
        with pytest.raises(ConfigError, match=r"PAINTING_LOST_AFTER_MINUTES=.*use a number of minutes above 0"):
            reload_settings()
    finally:
        monkeypatch.undo()
        reload_settings()


@pytest.mark.unit
def test_the_epoch_history_keeps_the_last_row_per_epoch_and_skips_a_torn_line(tmp_path):
    row = {"run": 1, "epoch": 1, "phase": 1, "loss": 1.5, "accuracy": 0.5, "val_loss": 1.9, "val_accuracy": 0.4,
           "lr": 1e-3, "seconds": 21.678122555999835, "metrics": {"loss": 1.5}}
    epoch_history.append(tmp_path, row)
    epoch_history.append(tmp_path, {**row, "epoch": 2})
    epoch_history.append(tmp_path, {**row, "epoch": 2, "loss": 0.9})
    with (tmp_path / epoch_history.HISTORY).open("a") as f:
        f.write('{"run": 1, "epoch": 3, "lo')  # a process killed mid-write
    assert epoch_history.read(tmp_path) == [row, {**row, "epoch": 2, "loss": 0.9}]
