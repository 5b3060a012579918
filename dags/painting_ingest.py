"""
### painting_ingest

Looks at the data folder on a schedule (`PAINTING_INGEST_SCHEDULE`, hourly by default). When a
CSV or image was added, removed or changed since the last ingest, it **ingests** the folder into
Postgres (rejects recorded with reasons) and publishes the `painting_catalog` Asset, which starts
`painting_retrain`. When nothing changed the task is *skipped* and no Asset event is published.

First, **check_settled** scans the folder twice `PAINTING_INGEST_QUIET_SECONDS` apart (60 s by
default; at once when nothing was touched for that long): a folder still being copied is skipped,
so a half-copied Kaggle download never starts a full retrain. The next scheduled run tries again.
"""

from __future__ import annotations

from airflow.sdk import chain, dag, get_current_context, task

from painting_ml.core.settings import get_settings
from painting_ml.orchestration.notifications import alerts
from painting_ml.orchestration.params import deployment_defaults, run_params
from painting_ml.orchestration.schedule import DEFAULT_ARGS, PAINTING_CATALOG, TASK_TIMEOUT

_settings = get_settings()
_alerts = alerts(_settings)


@dag(
    dag_id="painting_ingest",
    schedule=_settings.ingest_schedule,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["painting_ml"],
    default_args={**DEFAULT_ARGS, "on_failure_callback": _alerts.task_failure or None},
    dagrun_timeout=3 * TASK_TIMEOUT,
    # The same data_dir field (title, description, check, deployment default) as the retraining form.
    params={"data_dir": run_params(deployment_defaults(_settings))["data_dir"]},
)
def painting_ingest():
    @task
    def check_settled() -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        from painting_ml.pipeline import folder_settled_step

        settled, why = folder_settled_step(get_current_context()["params"]["data_dir"], _settings.ingest_quiet_seconds)
        if not settled:
            raise AirflowSkipException(why)
        return why

    @task
    def migrate() -> list[str]:
        from painting_ml.pipeline import migrate_step

        return migrate_step()

    @task(outlets=[PAINTING_CATALOG], multiple_outputs=False)
    def ingest_changes() -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from painting_ml.pipeline import ingest_if_changed_step

        summary = ingest_if_changed_step(get_current_context()["params"]["data_dir"])
        if summary is None:
            raise AirflowSkipException("no new or changed CSVs or images since the last ingest")
        return summary

    chain(check_settled(), migrate(), ingest_changes())


painting_ingest()
