"""
### painting_attribute

Puts the champion to work on the whole catalog. Runs when `painting_retrain`'s promotion publishes
the `painting_champion` Asset and when `painting_ingest` publishes `painting_catalog` (new
paintings):

**migrate** → **export_champion** (the champion's serving SavedModel — image bytes in,
probabilities and embedding out — written once and recorded with its sha256; skips the run when no
run was promoted yet) → **plan** (how many shards the paintings this champion has not scored yet
make) → **score** ×N, a mapped task on queue and pool `gpu` (top-k artists with probabilities and a
unit-length embedding per painting, committed batch by batch) → **finish** (the pgvector
nearest-neighbour index where the server has the extension; artist centroids).

Incremental: a painting is scored once per champion (again only when its catalog row changed), so
a rerun scores nothing and a new champion scores everything. Query the results with
`painting-ml sql attributions | possible_misattributions | similar_paintings | artist_neighbours`,
`painting-ml similar IMG` and `painting-ml attributions --misattributed`. All logic lives in
`painting_ml`.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from painting_ml.orchestration.notifications import alerts
from painting_ml.orchestration.schedule import (
    DEFAULT_ARGS,
    GPU_POOL,
    GPU_QUEUE,
    PAINTING_CATALOG,
    PAINTING_CHAMPION,
    TASK_TIMEOUT,
)

_alerts = alerts()


@dag(
    dag_id="painting_attribute",
    schedule=(PAINTING_CHAMPION | PAINTING_CATALOG),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["painting_ml"],
    default_args={**DEFAULT_ARGS, "on_failure_callback": _alerts.task_failure or None},
    dagrun_timeout=4 * TASK_TIMEOUT,
)
def painting_attribute():
    @task
    def migrate() -> list[str]:
        from painting_ml.pipeline import migrate_step

        return migrate_step()

    @task
    def export_champion() -> int:
        from airflow.sdk.exceptions import AirflowSkipException

        from painting_ml.pipeline import export_champion_step

        run_id = export_champion_step()
        if run_id is None:
            raise AirflowSkipException("no champion yet: nothing to attribute")
        return run_id

    @task
    def plan(champion_run: int) -> list[dict]:
        from painting_ml.pipeline import plan_attribution_step

        planned = plan_attribution_step(champion_run)
        return [{"run_id": champion_run, "shard": s, "shards": planned["shards"]} for s in range(planned["shards"])]

    @task(queue=GPU_QUEUE, pool=GPU_POOL)
    def score(part: dict) -> int:
        from painting_ml.pipeline import attribute_shard_step

        return attribute_shard_step(part["run_id"], part["shard"], part["shards"])["scored"]

    @task(trigger_rule="none_failed_min_one_success", multiple_outputs=False)
    def finish(champion_run: int) -> dict:
        from painting_ml.pipeline import finish_attribution_step

        return finish_attribution_step(champion_run)

    champion = export_champion()
    migrate() >> champion
    # mypy reads a task call's arguments as the function's; Airflow passes XComArgs, resolved at run time.
    score.expand(part=plan(champion)) >> finish(champion)  # type: ignore[arg-type]


painting_attribute()
