"""Airflow-facing constants shared by the DAG files: the painting-catalog Asset, the schedules,
retry policy and the GPU pool. Cheap to import (no TensorFlow, no database)."""

from __future__ import annotations

import shutil
import subprocess
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


def gpu_count() -> int:
    """GPUs on this machine per ``nvidia-smi -L`` (0 when there is none)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def gpu_pool_slots() -> int:
    """Slots of the ``gpu`` pool: one per GPU, at least one (a CPU-only worker still trains)."""
    return max(1, gpu_count())
