"""Stop signals as an exception: SIGTERM, SIGINT and SIGHUP become :class:`Interrupted`.

What Kubernetes, systemd, ``docker stop``, a Celery shutdown or Ctrl-C send must end a run in a
recorded state, so inside :func:`interruptible` the first such signal raises
:class:`Interrupted` in the main thread (a ``finally`` or ``except`` then records the run).
Inside :func:`deferred` it is held until the block ends or :func:`check` is called: training
defers while Keras writes checkpoints and raises between batches. A second signal ends the
process at once with the signal's default action.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: The signals that stop a run.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Interrupted(BaseException):  # noqa: N818 (named like KeyboardInterrupt, which it generalises)
    """A stop signal arrived. A ``BaseException``, like ``KeyboardInterrupt``: no ``except
    Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        """The shell's status for a process ended by this signal (128 + its number)."""
        return 128 + self.signum


class _State:
    depth = 0           # nested interruptible() blocks
    deferring = 0       # nested deferred() blocks
    pending: int | None = None
    raised = False


_state = _State()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.pending is not None:  # the second one: its default action, now
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _state.pending = signum
    if not _state.deferring:
        _state.raised = True
        raise Interrupted(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, a stop signal raises :class:`Interrupted` (main thread only; elsewhere
    the block runs with the handlers as they are). The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    if _state.depth == 0:
        _state.pending, _state.raised = None, False
    _state.depth += 1
    for s in STOP_SIGNALS:
        signal.signal(s, _on_signal)
    try:
        yield
    finally:
        _state.depth -= 1
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal while the block runs (files being written); raise it when the block
    ends or at the next :func:`check`."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    check()


def check() -> None:
    """Raise :class:`Interrupted` for a stop signal held by :func:`deferred` (once)."""
    if _state.pending is not None and not _state.raised and _state.depth:
        _state.raised = True
        raise Interrupted(_state.pending)
