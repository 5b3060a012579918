"""A training run's row while it runs and after it stops, whatever stops it.

- :func:`hold_run_key`: one live attempt per run key. A session-scoped advisory lock on a
  connection of the training's own, held for its whole life (the server frees it when the process
  dies), and a thread that beats ``runs.heartbeat_at`` on that connection every
  :data:`HEARTBEAT_SECONDS`.
- :func:`mark_run_stopped`: the row of a training that raised (``failed``) or was stopped by a
  signal (``interrupted``), written with retries while the database reconnects.
- :func:`sweep_lost_runs`: a ``running`` row with no heartbeat for :func:`lost_after_minutes`
  whose run key no session holds was left by a process that vanished (SIGKILL, out of memory,
  host lost): it becomes ``lost``.

No Keras here: the train task's failure callback (which may run in the scheduler's callback
process after a worker died) and ``painting-ml runs`` import this without paying for TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from painting_ml.core import db, locks
from painting_ml.core.errors import DatabaseError, PaintingMLError
from painting_ml.core.interrupts import Interrupted

log = logging.getLogger(__name__)

#: Seconds between two heartbeats of a live training.
HEARTBEAT_SECONDS = 60.0
#: Pauses between the attempts to write a stopped run's state (about 30 s in all).
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)


class RunKeyBusy(PaintingMLError):
    """Another live process is training this run key."""


def lost_after_minutes() -> float:
    """``PAINTING_LOST_AFTER_MINUTES`` (a setting): how long a ``running`` row may go without a
    heartbeat (while no process holds its run key) before the sweep marks it ``lost``."""
    from painting_ml.core.settings import get_settings

    return get_settings().lost_after_minutes


class RunLease:
    """This process's hold on a run key: the advisory lock and the heartbeat thread.

    The connection keeps TCP keepalives on both ends, so the server drops (and unlocks) the
    session of a host that is gone within about two minutes. When the connection drops while the
    process lives (a database restart), the thread reconnects and takes the lock again;
    :meth:`verify` raises if another attempt took it meanwhile.
    """

    def __init__(self, run_key: str, url: str) -> None:
        self.run_key, self.url = run_key, url
        self.run_id: int | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._io = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._taken_by_other: str | None = None

    def acquire(self) -> None:
        """Take the run key, or raise :class:`RunKeyBusy` naming who holds it."""
        conn = self._connect()
        if self._take(conn):
            self._conn = conn
            return
        holder = _describe_holder(conn, self.run_key)
        conn.close()
        raise RunKeyBusy(f"run key {self.run_key!r} is being trained by another process ({holder}); "
                         "wait for it to finish or stop it, then rerun with the same key to resume")

    def attach(self, run_id: int) -> None:
        """Beat the row of ``run_id`` now and every :data:`HEARTBEAT_SECONDS` until released."""
        self.run_id = run_id
        self.beat()
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat_forever, name=f"heartbeat-{run_id}", daemon=True)
            self._thread.start()

    def beat(self) -> None:
        """Set the row's heartbeat now (reconnecting and re-taking the key if the connection dropped)."""
        if self.run_id is None:
            return
        with self._io:
            if self._conn is None or self._conn.closed:
                self._reconnect()
            if self._conn is not None:
                self._conn.execute(db.sql("runs", "beat"), {"id": self.run_id})

    def verify(self) -> None:
        """Raise :class:`RunKeyBusy` when another attempt took the run key while this one's
        connection was down (both would write the same folder)."""
        if self._taken_by_other:
            raise RunKeyBusy(f"run key {self.run_key!r} was taken by another process ({self._taken_by_other}) "
                             "while this one's database connection was down; this attempt stops, that one goes on")

    def release(self) -> None:
        """Stop beating, give the key back and close the connection (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._io:
            if self._conn is not None and not self._conn.closed:
                with contextlib.suppress(psycopg.Error):
                    self._conn.execute(db.sql("runs", "release_run_key"), {"lock": locks.RUN, "key": self.run_key})
                self._conn.close()
            self._conn = None

    def _beat_forever(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self.beat()
            except (psycopg.Error, PaintingMLError) as exc:
                log.warning("run %s: heartbeat failed (%s); retrying in %g s", self.run_id,
                            db.redact_url(str(exc).strip(), self.url)[:200], HEARTBEAT_SECONDS)

    def _connect(self) -> psycopg.Connection[Any]:
        name = f"painting-ml pid {os.getpid()} on {socket.gethostname()}"[:63]
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10, row_factory=dict_row,
                                   application_name=name, keepalives=1, keepalives_idle=30,
                                   keepalives_interval=10, keepalives_count=3)
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot connect to the painting database {db.redact_url(self.url)}: "
                                f"{db.redact_url(str(exc).strip(), self.url)}") from None
        # The server's side of the keepalives (ignored on a unix socket, where a dead process's
        # connection closes at once).
        conn.execute("SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3")
        return conn

    def _take(self, conn: psycopg.Connection[Any]) -> bool:
        row = db.fetch_one(conn, db.sql("runs", "take_run_key"), {"lock": locks.RUN, "key": self.run_key},
                           required=True)
        return bool(row["taken"])

    def _reconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        conn = self._connect()
        if self._take(conn):
            self._conn = conn
            log.warning("run %s: reconnected to the painting database and took its run key again", self.run_id)
        else:
            self._taken_by_other = _describe_holder(conn, self.run_key)
            conn.close()
            self._stop.set()


def _describe_holder(conn: psycopg.Connection[Any], run_key: str) -> str:
    row = db.fetch_one(conn, db.sql("runs", "run_key_holder"), {"lock": locks.RUN, "key": run_key})
    if row is None:
        return "it just finished"
    parts = [row["application_name"] or "a session"]
    if row["client_addr"]:
        parts.append(f"from {row['client_addr']}")
    if row["run_id"] is not None:
        parts.append(f"run {row['run_id']}")
    if row["heartbeat_at"] is not None:
        parts.append(f"last heartbeat {row['heartbeat_at']:%Y-%m-%d %H:%M:%S %Z}".strip())
    return ", ".join(parts)


_held: dict[str, tuple[RunLease, int]] = {}


@contextlib.contextmanager
def hold_run_key(run_key: str, url: str | None = None) -> Iterator[RunLease]:
    """Hold ``run_key`` for the block: one live attempt per key across processes and hosts.
    Re-entrant within a process (``painting-ml run`` holds it, and its training takes it again).

    Raises:
        RunKeyBusy: another live process holds the key (one line naming it).
    """
    if run_key in _held:
        lease, depth = _held[run_key]
        _held[run_key] = (lease, depth + 1)
    else:
        lease = RunLease(run_key, url or db.resolve_url())
        lease.acquire()
        _held[run_key] = (lease, 1)
    try:
        yield lease
    finally:
        lease, depth = _held.pop(run_key)
        if depth > 1:
            _held[run_key] = (lease, depth - 1)
        else:
            lease.release()


def error_text(error: BaseException | str) -> str:
    """``Type: message`` of an exception (``interrupted by SIGTERM`` for a stop signal)."""
    if isinstance(error, str):
        return error.strip()
    if isinstance(error, Interrupted):
        return str(error)
    return f"{type(error).__name__}: {error}".strip().rstrip(":")


def mark_run_stopped(run_key: str, error: BaseException | str, url: str | None = None, *,
                     status: str | None = None, delays: Sequence[float] = RETRY_DELAYS,
                     sleep: Callable[[float], None] = time.sleep) -> int | None:
    """Record that the training of ``run_key`` stopped without its model: ``interrupted`` for
    :class:`Interrupted` (the signal named in ``error``), else ``failed`` with the error — if the
    row is still ``running`` and no live attempt holds the key.

    The database may be what failed: the write is tried again after each of ``delays`` (about
    30 s in all); if it never gets through, the row stays ``running`` and the sweep marks it
    ``lost`` later. Returns the run id, or None when nothing was marked.
    """
    status = status or ("interrupted" if isinstance(error, Interrupted) else "failed")
    text = error_text(error)[:2000]
    for attempt, delay in enumerate((0.0, *delays)):
        if delay:
            sleep(delay)
        try:
            with db.connect(url) as conn:
                row = db.fetch_one(conn, db.sql("runs", "stop_run"),
                                   {"key": run_key, "status": status, "error": text, "lock": locks.RUN})
        except (DatabaseError, psycopg.OperationalError) as exc:
            last = " ".join(str(exc).split())[:300]
            log.info("run %s: could not record it %s (attempt %d of %d): %s", run_key, status, attempt + 1,
                     len(delays) + 1, last)
            continue
        if row:
            log.info("run %s (%s) marked %s: %s", row["id"], run_key, status, text[:500])
        return int(row["id"]) if row else None
    log.error("run %s: not recorded %s (the database stayed out of reach); it shows 'running' until the sweep "
              "marks it lost", run_key, status)
    return None


def mark_run_failed(run_key: str, error: BaseException | str, url: str | None = None) -> int | None:
    """Mark the run ``run_key`` failed with the error (see :func:`mark_run_stopped`)."""
    return mark_run_stopped(run_key, error, url, status="failed")


def sweep_lost_runs(url: str | None = None, minutes: float | None = None) -> list[int]:
    """Mark ``lost`` every ``running`` row with no heartbeat for ``minutes`` (default
    :func:`lost_after_minutes`) whose run key no live session holds; return their ids."""
    minutes = lost_after_minutes() if minutes is None else minutes
    error = (f"lost: no heartbeat for over {minutes:g} minutes and no process holds its run key — the training "
             "process ended without a word (killed, out of memory, host lost); rerun with the same run key "
             "to resume from its last checkpoint")
    with db.connect(url) as conn:
        rows = db.fetch_dicts(conn, db.sql("runs", "mark_lost"), {"minutes": minutes, "error": error,
                                                                   "lock": locks.RUN})
    for r in rows:
        log.warning("run %s (%s) marked lost: last heartbeat %s", r["id"], r["run_key"], r["heartbeat_at"])
    return sorted(int(r["id"]) for r in rows)


def run_state(run_key: str, url: str | None = None) -> dict[str, Any] | None:
    """The row of ``run_key`` (id, status, error, model_path), or None."""
    with db.connect(url) as conn:
        return db.fetch_one(conn, db.sql("runs", "run_by_key"), {"key": run_key})
