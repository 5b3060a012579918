"""Airflow-facing constants shared by the DAG files: the painting-catalog Asset, the schedules,
retry policy, timeouts and the GPU queue and pool names. Cheap to import (no TensorFlow, no database).
The ``gpu`` pool's size (one slot per GPU) is set where workers are deployed (``airflow pools set``;
compose's airflow-init reads ``GPU_COUNT``)."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

from painting_ml.core.config import Optimizer
from painting_ml.core.settings import Settings, get_settings
from painting_ml.orchestration.failures import NO_RETRY

# Published by painting_ingest only when an ingest changed the catalog; painting_retrain listens.
# A non-postgres URI scheme: the postgres provider would insist on host/db/schema/table.
PAINTING_CATALOG = Asset(name="painting_catalog", uri="painting://catalog/paintings", group="painting_ml")
# Published by painting_retrain's promote task; painting_attribute listens.
PAINTING_CHAMPION = Asset(name="painting_champion", uri="painting://models/champion", group="painting_ml")

GPU_QUEUE = "gpu"
GPU_POOL = "gpu"

#: Every task but train: ingesting the full Kaggle set (~100k images probed) is the slowest.
TASK_TIMEOUT = timedelta(hours=2)

#: Tries after the first: a worker, network or database hiccup passes; a wrong config fails at once
#: (:data:`~painting_ml.orchestration.failures.NO_RETRY`).
RETRIES = 2

DEFAULT_ARGS = {
    "owner": "painting_ml",
    "execution_timeout": TASK_TIMEOUT,
    "retries": RETRIES,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "retry_policy": NO_RETRY,
}


def retrain_schedule() -> AssetOrTimeSchedule:
    """Weekly cron (``PAINTING_RETRAIN_CRON``) or whenever the painting catalog changes."""
    cron = get_settings().retrain_cron
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=[PAINTING_CATALOG])


def train_timeout(settings: Settings | None = None) -> timedelta:
    """``execution_timeout`` of one train try (``PAINTING_TRAIN_TIMEOUT_MINUTES``)."""
    return timedelta(minutes=(settings or get_settings()).train_timeout_minutes)


def retrain_timeout(settings: Settings | None = None, retries: int = RETRIES) -> timedelta:
    """``dagrun_timeout`` of painting_retrain: every try of the largest sweep a run may ask for (each
    optimizer once) back to back on one GPU, plus the other tasks. Past that, something hangs and
    the run is failed (and alerts fire). The bound holds whatever the trigger form says, as Airflow
    fixes it when it parses the DAG file."""
    return train_timeout(settings) * len(Optimizer) * (retries + 1) + 3 * TASK_TIMEOUT
