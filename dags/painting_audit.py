"""
### painting_audit

Finds the catalog's mislabelled paintings with out-of-fold evidence:

**check_config** → **migrate** → **ingest** (only when the data folder changed) → **select_artists**
(the artists a retrain with these Params would select) → **plan** (every labelled painting of them,
label overrides applied, dealt into `folds` group-aware folds stratified by artist; one dataset
version per fold, the fold as its test split) → **augment** (the image-cache copies, shared by the
folds) → **train_fold** ×k, a mapped task on the `gpu` queue and pool (the ordinary training engine;
`audit_recipe` head: backbone frozen, head trained; full: the recipe in force) → **predict_fold** ×k
(each fold's model scores only the paintings it never saw) → **rank** (cleanlab's confident learning
over the out-of-fold probabilities: `label_issues`, the review queue, `painting-ml sql
possible_misattributions`) → **evidence** (exemplars and heatmaps of the top issues) → **report**.

Runs whenever `painting_ingest` publishes the `painting_catalog` Asset, and by hand with the form
below. Fold runs are evidence about labels: they are never evaluated, promoted or shown as the
latest run. All logic lives in `painting_ml`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, chain, dag, get_current_context, task

from painting_ml.orchestration.notifications import alerts
from painting_ml.orchestration.params import config_from_params, deployment_defaults, describe_defaults, run_params
from painting_ml.orchestration.schedule import (
    DEFAULT_ARGS,
    GPU_POOL,
    GPU_QUEUE,
    PAINTING_CATALOG,
    TASK_TIMEOUT,
    train_timeout,
)

DEFAULTS = deployment_defaults()
DOC = f"{__doc__}\n**The form's defaults here:** {describe_defaults()}.\n"
ALERTS = alerts()
MAX_FOLDS = 10
# A frozen random backbone judges nothing: where the deployment trains from scratch, audit with the full recipe.
DEFAULT_RECIPE = "full" if "weights" in DEFAULTS and not DEFAULTS["weights"] else "head"
AUDIT_PARAMS = {
    "folds": Param(5, type="integer", minimum=2, maximum=MAX_FOLDS, title="Folds", section="Audit",
                   description="k: every painting is judged by the one of k models that did not train on it. "
                               f"Takes an integer in [2, {MAX_FOLDS}]."),
    "audit_recipe": Param(DEFAULT_RECIPE, type="string", enum=["head", "full"], title="Audit recipe",
                          section="Audit",
                          description="head: the backbone frozen (the form's weights), only the head trained — k "
                                      "trainings at little more than k feature passes; full: the training recipe "
                                      "in force. Takes head or full."),
}


def _config():
    """The fold trainings' base config from this run's Params (the audit's own Params left out)."""
    params = get_current_context()["params"]
    return config_from_params({k: v for k, v in params.items() if k not in AUDIT_PARAMS})


def _audit_key() -> str:
    """Stable across retries: a retried task finds its audit, folds and fold runs again."""
    ctx = get_current_context()
    return f"{ctx['dag'].dag_id}:{ctx['run_id']}"


def _mark_fold_failed(context: dict) -> None:
    """Failure callback of train_fold: a try killed from outside leaves its run row failed."""
    from painting_ml.orchestration.notifications import error_line
    from painting_ml.pipeline import mark_fold_failed_step

    ti = context["ti"]
    try:
        mark_fold_failed_step(f"{ti.dag_id}:{context['run_id']}", ti.map_index, error_line(context.get("exception")))
    except Exception:  # a callback must not mask the task's own failure
        import logging

        logging.getLogger(__name__).exception("could not mark fold %s's run failed", ti.map_index)


@dag(
    dag_id="painting_audit",
    schedule=[PAINTING_CATALOG],
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["painting_ml"],
    default_args={**DEFAULT_ARGS, "on_failure_callback": ALERTS.task_failure or None},
    # Folds train one after another at worst (one gpu slot), each within train's timeout.
    dagrun_timeout=train_timeout() * MAX_FOLDS + 3 * TASK_TIMEOUT,
    on_failure_callback=ALERTS.run_failure or None,
    params={**run_params(DEFAULTS, exclude=("optimizers",)), **AUDIT_PARAMS},
)
def painting_audit():
    @task(retries=0, execution_timeout=timedelta(minutes=5), multiple_outputs=False)
    def check_config() -> dict:
        from painting_ml.orchestration.failures import fail_without_retry
        from painting_ml.pipeline import check_config_step

        with fail_without_retry():
            return check_config_step(_config())

    @task
    def migrate() -> list[str]:
        from painting_ml.pipeline import migrate_step

        return migrate_step()

    @task(multiple_outputs=False)
    def ingest() -> dict:
        from painting_ml.orchestration.failures import fail_without_retry
        from painting_ml.pipeline import ingest_step

        with fail_without_retry():
            return ingest_step(_config())

    @task(multiple_outputs=False)
    def select_artists() -> dict:
        from painting_ml.orchestration.failures import fail_without_retry
        from painting_ml.pipeline import select_artists_step

        with fail_without_retry():
            return select_artists_step(_config())

    @task
    def plan(selection: dict) -> int:
        from painting_ml.orchestration.failures import fail_without_retry
        from painting_ml.pipeline import start_audit_step

        params = get_current_context()["params"]
        with fail_without_retry():
            started = start_audit_step(_config(), selection, int(params["folds"]), params["audit_recipe"],
                                       _audit_key())
        return started["audit_id"]

    @task
    def augment(audit_id: int) -> list[int]:
        """The fold versions' image copies; returns the folds, ready to train (what train_fold maps over)."""
        from painting_ml.pipeline import augment_audit_step

        return list(range(len(augment_audit_step(audit_id))))

    @task(queue=GPU_QUEUE, pool=GPU_POOL, execution_timeout=train_timeout(),
          on_failure_callback=[*ALERTS.task_failure, _mark_fold_failed])
    def train_fold(audit_id: int, fold: int) -> int:
        from painting_ml.pipeline import train_fold_step

        train_fold_step(audit_id, fold)
        return fold

    @task
    def predict_fold(audit_id: int, fold: int) -> int:
        from painting_ml.pipeline import predict_fold_step

        predict_fold_step(audit_id, fold)
        return fold

    @task
    def rank(audit_id: int, predicted: list[int]) -> int:
        from painting_ml.pipeline import rank_step

        rank_step(audit_id)
        return audit_id

    @task
    def evidence(audit_id: int) -> int:
        from painting_ml.pipeline import audit_evidence_step

        audit_evidence_step(audit_id)
        return audit_id

    @task
    def report(audit_id: int) -> str:
        from painting_ml.pipeline import audit_report_step

        return audit_report_step(audit_id)

    # mypy reads a task call's arguments as the function's; Airflow passes XComArgs, resolved at run time.
    selection = select_artists()
    chain(check_config(), migrate(), ingest(), selection)
    audit_id = plan(selection)  # type: ignore[arg-type]
    trained = train_fold.partial(audit_id=audit_id).expand(fold=augment(audit_id))  # type: ignore[arg-type]
    predicted = predict_fold.partial(audit_id=audit_id).expand(fold=trained)
    report(evidence(rank(audit_id, predicted)))  # type: ignore[arg-type]


painting_audit()
