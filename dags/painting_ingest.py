"""
### painting_ingest

Looks at the data folder on a schedule (`PAINTING_INGEST_SCHEDULE`, hourly by default). When a
CSV or image was added, removed or changed since the last ingest, it **ingests** the folder into
Postgres (rejects recorded with reasons) and publishes the `painting_catalog` Asset, which starts
`painting_retrain`. When nothing changed the task is *skipped* and no Asset event is published.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from painting_ml.orchestration import DEFAULT_ARGS, PAINTING_CATALOG
from painting_ml.settings import get_settings

_settings = get_settings()


@dag(
    dag_id="painting_ingest",
    schedule=_settings.ingest_schedule,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["painting_ml"],
    default_args=DEFAULT_ARGS,
    params={
        "data_dir": Param(str(_settings.source_dir), type="string", minLength=1, title="Data folder",
                          description="Folder in the Kaggle layout to watch (PAINTING_DATA_DIR)."),
    },
)
def painting_ingest():
    @task(outlets=[PAINTING_CATALOG])
    def ingest_changes() -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from painting_ml.catalog import ingest_if_changed

        summary = ingest_if_changed(get_current_context()["params"]["data_dir"])
        if summary is None:
            raise AirflowSkipException("no new or changed CSVs or images since the last ingest")
        return summary

    ingest_changes()


painting_ingest()
