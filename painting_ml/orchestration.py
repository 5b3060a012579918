"""Airflow-facing constants shared by the DAG files: the painting-catalog Asset, the schedules,
retry policy and the GPU queue and pool names. Cheap to import (no TensorFlow, no database).
The ``gpu`` pool's size (one slot per GPU) is set where workers are deployed (``airflow pools set``;
compose's airflow-init reads ``GPU_COUNT``)."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

from painting_ml.settings import get_settings

# Published by painting_ingest only when an ingest changed the catalog; painting_retrain listens.
# A non-postgres URI scheme: the postgres provider would insist on host/db/schema/table.
PAINTING_CATALOG = Asset(name="painting_catalog", uri="painting://catalog/paintings", group="painting_ml")

GPU_QUEUE = "gpu"
GPU_POOL = "gpu"

DEFAULT_ARGS = {
    "owner": "painting_ml",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def retrain_schedule() -> AssetOrTimeSchedule:
    """Weekly cron (``PAINTING_RETRAIN_CRON``) or whenever the painting catalog changes."""
    cron = get_settings().retrain_cron
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=[PAINTING_CATALOG])

