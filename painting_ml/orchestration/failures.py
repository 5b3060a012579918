"""How tasks fail: errors no retry can fix end the task at once in one log line; a dead training run
is marked failed.

A wrong config, a missing weights file or a data-quality breach stays wrong on the next try, so
:func:`fail_without_retry` ends the task with :class:`TaskFailed` and :data:`NO_RETRY` (every task's
retry policy, in ``DEFAULT_ARGS``) fails it without retrying (retries are for the worker, network
and database hiccups). Airflow's task runner logs every exception with its traceback but a
``SystemExit`` as the one line ``Task exited exit_code=<code>``, so :class:`TaskFailed` is a
``SystemExit`` whose code is the library's one-line message: the log ends in that line, once,
with no traceback. Unexpected errors propagate unchanged and keep their tracebacks.

:func:`mark_train_failed` is the train task's failure callback: a try killed from outside
(``execution_timeout``, OOM, a lost worker) leaves no exception handler running, so the callback
marks its ``runs`` row failed with the error.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

log = logging.getLogger(__name__)


class TaskFailed(SystemExit):  # noqa: N818 (named for what the task does, as SystemExit is)
    """Ends a task with the one-line message ``code`` and no traceback; :data:`NO_RETRY` fails it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


#: Every task's retry policy: a :class:`TaskFailed` fails at once; anything else takes the retries.
NO_RETRY = ExceptionRetryPolicy(rules=[RetryRule(
    exception=TaskFailed, action=RetryAction.FAIL,
    reason="a config, weights-file or data-quality error: the next try would fail the same way")])


def train_run_key(dag_id: str, run_id: str, fingerprint: str) -> str:
    """The key of one training run: stable across retries, so a retry finds its checkpoint."""
    return f"{dag_id}:{run_id}:{fingerprint}"


@contextlib.contextmanager
def fail_without_retry() -> Iterator[None]:
    """End the task with :class:`TaskFailed` on an error a retry cannot fix — a bad config or
    weights file, unusable input data, a data-quality breach, an artist selection the data cannot
    meet — with no retry and one log line: the error's type and message."""
    from painting_ml.core.errors import ConfigError, DataError, SelectionError
    from painting_ml.orchestration.notifications import error_line

    try:
        yield
    except (ConfigError, DataError, SelectionError) as exc:
        raise TaskFailed(error_line(exc)) from exc


def mark_train_failed(context: dict[str, Any]) -> None:
    """Failure callback of the mapped train task: mark this map index's run failed."""
    from painting_ml.learn.run_status import mark_run_failed  # not via pipeline: no TensorFlow here
    from painting_ml.orchestration.notifications import error_line
    from painting_ml.orchestration.params import config_from_params

    ti = context["ti"]
    try:
        cfg = config_from_params(context["params"])
        optimizer = cfg.optimizers[ti.map_index] if ti.map_index is not None and ti.map_index >= 0 else cfg.optimizer
        key = train_run_key(ti.dag_id, context["run_id"], cfg.replace(optimizer=optimizer).fingerprint())
        mark_run_failed(key, error_line(context.get("exception")))
    except Exception:  # a callback must not mask the task's own failure
        log.exception("could not mark the training run of %s failed", ti.task_id)
