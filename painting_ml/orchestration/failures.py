"""How tasks fail: errors no retry can fix fail at once, and a dead training run is marked failed.

A wrong config, a missing weights file or a data-quality breach stays wrong on the next try, so
:func:`fail_without_retry` turns them into ``AirflowFailException`` (retries are for the worker,
network and database hiccups). :func:`mark_train_failed` is the train task's failure callback: a
try killed from outside (``execution_timeout``, OOM, a lost worker) leaves no exception handler
running, so the callback marks its ``runs`` row failed with the error.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


def train_run_key(dag_id: str, run_id: str, fingerprint: str) -> str:
    """The key of one training run: stable across retries, so a retry finds its checkpoint."""
    return f"{dag_id}:{run_id}:{fingerprint}"


@contextlib.contextmanager
def fail_without_retry() -> Iterator[None]:
    """Re-raise ConfigError and DataQualityError as ``AirflowFailException`` (no retries)."""
    from painting_ml.core.errors import ConfigError, DataQualityError

    try:
        yield
    except (ConfigError, DataQualityError) as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc


def mark_train_failed(context: dict[str, Any]) -> None:
    """Failure callback of the mapped train task: mark this map index's run failed."""
    from painting_ml.core.config import RunConfig
    from painting_ml.orchestration.notifications import error_line
    from painting_ml.learn.run_status import mark_run_failed  # not via pipeline: no TensorFlow here

    ti = context["ti"]
    try:
        cfg = RunConfig.from_params(dict(context["params"]))
        optimizer = cfg.optimizers[ti.map_index] if ti.map_index is not None and ti.map_index >= 0 else cfg.optimizer
        key = train_run_key(ti.dag_id, context["run_id"], cfg.replace(optimizer=optimizer).fingerprint())
        mark_run_failed(key, error_line(context.get("exception")))
    except Exception:  # a callback must not mask the task's own failure
        log.exception("could not mark the training run of %s failed", ti.task_id)
