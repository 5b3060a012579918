"""
### painting_retrain

Retrains the painter classifier and keeps the best model as champion:

**check_config** (the Params make a valid config; the weights file is there and fits the backbone;
the artifact store answers and takes writes) → **migrate** (pending schema migrations) →
**sweep_lost_runs** (trainings whose process vanished are marked `lost`) → **ingest** (only when
the data folder changed) → **select_artists** (top N by usable images, equalised) → **split**
(stratified, seeded, stored as a dataset version) → **validate** (the
data-quality gate: reject rate, paintings per artist per split, drift against the previous version;
a breach fails the run here, before any GPU time) → **augment** (offline
transforms of the train split) → **sweep** → **train** ×N, a mapped task, one per optimizer in
`optimizers` (ResNet50/101/18, single- or multi-task, queue and pool `gpu`) → **evaluate** ×N
(per-class metrics, confusion, top-3, open-set AUROC, verification AUC in Postgres) → **compare**
(one plot of every run's curves; best by validation accuracy) → **promote** (the gate: macro-F1 at
least the champion's on the same dataset version, no artist's recall down more than
`max_recall_drop` points) → **mosaics** ×N → **report** ×N (`report.html` per run).

Runs weekly (`PAINTING_RETRAIN_CRON`), whenever `painting_ingest` publishes the `painting_catalog`
Asset, and by hand from the UI with the typed form below. The form's defaults are the production
recipe (ResNet50, 224 px, ImageNet weights from `PAINTING_WEIGHTS`, two-phase fine-tuning), overridden
field by field by this deployment's `PAINTING_RUN_DEFAULTS` file (`painting-ml airflow` writes the
`cpu` preset there). Every task has an
`execution_timeout` (train's is `PAINTING_TRAIN_TIMEOUT_MINUTES`), the run a `dagrun_timeout`; failures,
the run's end and each promotion are mailed when `PAINTING_ALERT_EMAIL` is set. All logic lives in
`painting_ml`. A config, weights-file or data-quality error fails its task at once, the reason the
last line of the task's log.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import chain, dag, get_current_context, task

from painting_ml.orchestration.failures import fail_without_retry, mark_train_failed, train_run_key
from painting_ml.orchestration.notifications import alerts
from painting_ml.orchestration.params import config_from_params, deployment_defaults, describe_defaults, run_params
from painting_ml.orchestration.schedule import (
    DEFAULT_ARGS,
    GPU_POOL,
    GPU_QUEUE,
    PAINTING_CHAMPION,
    retrain_schedule,
    retrain_timeout,
    train_timeout,
)

# Read at parse time: one small file, no database. An invalid defaults file fails the import here,
# with the key named, and shows as an import error in the UI.
DEFAULTS = deployment_defaults()
DOC = f"{__doc__}\n**The form's defaults here:** {describe_defaults()}.\n"
ALERTS = alerts()


def _config(**overrides):
    """The run config from this run's Params (validated; unknown keys refused)."""
    cfg = config_from_params(get_current_context()["params"])
    return cfg.replace(**overrides) if overrides else cfg


@dag(
    dag_id="painting_retrain",
    schedule=retrain_schedule(),
    catchup=False,
    max_active_runs=4,
    doc_md=DOC,
    tags=["painting_ml"],
    default_args={**DEFAULT_ARGS, "on_failure_callback": ALERTS.task_failure or None},
    dagrun_timeout=retrain_timeout(),
    on_success_callback=ALERTS.run_success or None,
    on_failure_callback=ALERTS.run_failure or None,
    # The trigger form: one typed Param per config field, in sections, from the config schema; the
    # single-run optimizer is left out, as this DAG trains one run per entry of `optimizers`.
    params=run_params(DEFAULTS, exclude=("optimizer",)),
)
def painting_retrain():
    @task(retries=0, execution_timeout=timedelta(minutes=5), multiple_outputs=False)
    def check_config() -> dict:
        from painting_ml.pipeline import check_config_step

        with fail_without_retry():
            return check_config_step(_config())

    @task
    def migrate() -> list[str]:
        from painting_ml.pipeline import migrate_step

        return migrate_step()

    @task
    def sweep_lost_runs() -> list[int]:
        from painting_ml.pipeline import sweep_lost_runs_step

        return sweep_lost_runs_step()

    @task(multiple_outputs=False)
    def ingest() -> dict:
        from painting_ml.pipeline import ingest_step

        with fail_without_retry():
            return ingest_step(_config())

    @task(multiple_outputs=False)
    def select_artists() -> dict:
        from painting_ml.pipeline import select_artists_step

        with fail_without_retry():
            return select_artists_step(_config())

    @task
    def split(selection: dict) -> int:
        from painting_ml.pipeline import split_step

        return split_step(_config(), selection)

    @task
    def validate(version_id: int) -> int:
        from painting_ml.pipeline import validate_step

        with fail_without_retry():
            validate_step(_config(), version_id)
        return version_id

    @task
    def augment(version_id: int) -> int:
        from painting_ml.pipeline import augment_step

        augment_step(_config(), version_id)
        return version_id

    @task
    def sweep() -> list[str]:
        return list(_config().optimizers)

    @task(queue=GPU_QUEUE, pool=GPU_POOL, execution_timeout=train_timeout(),
          on_failure_callback=[*ALERTS.task_failure, mark_train_failed])
    def train(version_id: int, optimizer: str) -> int:
        from painting_ml.pipeline import train_step

        ctx = get_current_context()
        cfg = _config(optimizer=optimizer)
        # Stable across retries: a retried training finds its run and resumes from its checkpoint.
        return train_step(cfg, version_id, train_run_key(ctx["dag"].dag_id, ctx["run_id"], cfg.fingerprint()))

    @task
    def evaluate(training_run: int) -> int:
        from painting_ml.pipeline import evaluate_step

        evaluate_step(training_run)
        return training_run

    @task
    def compare(training_runs: list[int]) -> int:
        from painting_ml.pipeline import compare_step

        # One read of all mapped outputs: iterating the lazy sequence would also ask for the item
        # one past the end, which Airflow logs as an error.
        return compare_step(list(training_runs[:]))["best_run_id"]

    @task(multiple_outputs=False, on_success_callback=ALERTS.promotion or None)
    def promote(best_run: int) -> dict:
        from painting_ml.pipeline import promote_step

        return promote_step(_config(), best_run)  # decision, test accuracy, macro-F1: the summary mail

    @task(outlets=[PAINTING_CHAMPION])
    def publish_champion(decision: dict) -> int:
        """Publish the champion Asset (painting_attribute listens) only when the champion changed."""
        from airflow.sdk.exceptions import AirflowSkipException

        if not decision["promoted"]:
            raise AirflowSkipException(f"run {decision['run_id']} was not promoted: the champion is unchanged")
        return decision["run_id"]

    @task
    def mosaics(training_run: int) -> int:
        from painting_ml.pipeline import mosaics_step

        mosaics_step(_config(), training_run)
        return training_run

    @task
    def report(training_run: int) -> str:
        from painting_ml.pipeline import report_step

        return report_step(training_run)

    # mypy reads a task call's arguments as the function's; Airflow passes XComArgs, resolved at run time.
    selection = select_artists()
    chain(check_config(), migrate(), sweep_lost_runs(), ingest(), selection)
    version = augment(validate(split(selection)))  # type: ignore[arg-type]
    runs = evaluate.expand(training_run=train.partial(version_id=version).expand(optimizer=sweep()))
    decided = promote(compare(runs))  # type: ignore[arg-type]
    publish_champion(decided)  # type: ignore[arg-type]
    # Every run of the sweep gets its mosaics and report, after the decision so the best one shows it.
    rendered = mosaics.expand(training_run=runs)
    decided >> rendered
    report.expand(training_run=rendered)


painting_retrain()
