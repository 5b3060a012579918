"""
### painting_gc

Applies the retention policy once a day: **collect_garbage** removes the artifact-store files of
runs no longer needed — every run's files are kept while it is the champion, one of the newest
`keep_runs` runs (`PAINTING_KEEP_RUNS`), named by a promotion decision or champion change, still
training or evaluating, or less than a day old — and the augmented, derived and reduced image
copies no live dataset version uses, plus files no database row names. Database rows stay
(metrics remain queryable; `runs.files_pruned_at` marks a run whose files went).

Trigger with `dry_run` to see what would go without removing anything. The task returns what was
(or would be) freed: files, bytes, by kind, and the runs pruned and kept.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from painting_ml.core.settings import get_settings
from painting_ml.orchestration.notifications import alerts
from painting_ml.orchestration.schedule import DEFAULT_ARGS, TASK_TIMEOUT

_settings = get_settings()
_alerts = alerts(_settings)


@dag(
    dag_id="painting_gc",
    schedule="@daily",
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["painting_ml"],
    default_args={**DEFAULT_ARGS, "on_failure_callback": _alerts.task_failure or None},
    dagrun_timeout=2 * TASK_TIMEOUT,
    params={
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Only report what would be removed; delete nothing."),
        "keep_runs": Param(_settings.keep_runs, type="integer", minimum=0, title="Runs to keep",
                           description="The newest runs whose files are kept, besides the champion, the runs "
                                       "promotions name and the runs in flight (PAINTING_KEEP_RUNS)."),
    },
)
def painting_gc():
    @task(multiple_outputs=False)
    def collect_garbage() -> dict:
        from painting_ml.pipeline import gc_step

        params = get_current_context()["params"]
        return gc_step(dry_run=bool(params["dry_run"]), keep_runs=int(params["keep_runs"]))

    collect_garbage()


painting_gc()
