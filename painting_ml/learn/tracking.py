"""Experiment tracking with Weights & Biases: one wandb run per training run, from its first epoch
to its promotion.

A run's wandb id is ``runs.wandb_id``, a random ``painting-<12 hex>`` made when the row is created
(:func:`new_wandb_id`), never the database id: after a database reset run 1 is a new run, and
must not append to the old run 1's history on the wandb server. Three steps write to that one
wandb run, each resuming it by id:

* training (:func:`start_training`): the config and every epoch's Keras logs;
* evaluation (:func:`log_evaluation`): test accuracy, macro-F1, top-3, the open-set and
  verification figures as summary values, and per target a table of per-class precision, recall,
  F1 and support and the confusion matrix (table and chart), all read back from Postgres;
* promotion (:func:`log_champion`): the model file as the ``painter-classifier`` model artifact
  with the aliases ``champion`` and ``run-<id>`` (wandb moves ``champion`` to the newest version).

``WANDB_MODE`` (``offline`` unless set; ``online``; ``disabled``) applies to all three, and a run
whose config says ``wandb: false`` is never logged. Every step on a host writes under
``$PAINTING_HOME/wandb/``; offline, each step leaves an ``offline-run-<time>-<wandb id>`` folder
there, and ``wandb sync $PAINTING_HOME/wandb`` (or the folders one by one) uploads them; folders
of the same run are replayed in start-time order into that one run. The API key, online, comes
only from the environment (``WANDB_API_KEY``), never the config or the database.

wandb is imported inside the functions: importing this module costs nothing, and it never
imports TensorFlow.
"""

from __future__ import annotations

import logging
import os
import secrets
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from painting_ml.core import db
from painting_ml.core.errors import PaintingMLError
from painting_ml.core.settings import get_settings

if TYPE_CHECKING:
    from wandb import Run

log = logging.getLogger(__name__)

#: The wandb project every run is logged to.
PROJECT = "painting_ml"
#: The model artifact every champion is a version of.
MODEL_ARTIFACT = "painter-classifier"
#: The chart wandb.plot.confusion_matrix draws, fed here from stored counts.
_CONFUSION_CHART = "wandb/confusion_matrix/v1"


def new_wandb_id() -> str:
    """A fresh wandb run id, ``painting-<12 hex>``: unique across database resets and hosts."""
    return f"painting-{secrets.token_hex(6)}"


def wandb_dir() -> Path:
    """The folder this host's wandb run folders land in: ``$PAINTING_HOME/wandb``."""
    return get_settings().home / "wandb"


def start_training(config: dict[str, Any], run_id: int, wandb_id: str | None, folder: Path | None = None,
                   enabled: bool = True) -> Run | None:
    """Start (or, for a retried training, resume) the run's wandb run.

    Args:
        config: the run configuration, logged as the wandb run's config.
        run_id: the database id, used only as the display name ``run-<id>``.
        wandb_id: ``runs.wandb_id``; ``None`` (a row without one) logs nothing.
        folder: where wandb makes its ``wandb/`` folder; ``None``: ``$PAINTING_HOME``, the
            folder evaluation and promotion use too, so leave it ``None`` outside tests.
        enabled: the run's ``wandb`` option.

    Returns:
        The wandb run (call ``.log`` per epoch and ``.finish()`` at the end), or ``None`` when
        tracking is off for this run or ``WANDB_MODE=disabled``.
    """
    tracked_id = _tracked_id(enabled, wandb_id, run_id)
    if tracked_id is None:
        return None
    return _init(tracked_id, run_id, folder, config=config)


def log_evaluation(run_id: int, url: str | None = None, *, folder: Path | None = None) -> bool:
    """Log the run's stored evaluation into its wandb run; ``False`` when tracking is off for it.

    Summary values ``eval/test_accuracy``, ``eval/macro_f1``, ``eval/top3_accuracy``,
    ``eval/open_set_auroc``, ``eval/chance``, ``eval/n_test``, ``eval/<target>/<figure>``,
    ``eval/open_set/<figure>`` and ``eval/verification/<subset>/<score>/{auc,n_pairs}``; tables
    ``eval/<target>/classes`` (label, precision, recall, f1, support, accuracy),
    ``eval/<target>/confusion`` (the confusion-matrix chart; its table, Actual, Predicted,
    nPredictions over every pair of classes, is ``eval/<target>/confusion_table``) and
    ``eval/verification`` (subset, score, auc, n_pairs, n_positive). Everything is read from
    Postgres, so a re-evaluation (or a later call) logs what the database holds.
    """
    with db.connect(url) as conn:
        run = _tracked_run(conn, run_id)
        wandb_id = _tracked_id(run["config"].get("wandb", True), run["wandb_id"], run_id)
        if wandb_id is None:
            return False
        metrics = db.fetch_dicts(conn, db.sql("tracking", "tracked_class_metrics"), {"id": run_id})
        confusion = db.fetch_dicts(conn, db.sql("tracking", "tracked_confusion"), {"id": run_id})
        verification = db.fetch_dicts(conn, db.sql("tracking", "tracked_verification"), {"id": run_id})
    wandb = _wandb()

    classes = run["classes"] or {}
    targets = list(dict.fromkeys([*classes, *(m["target"] for m in metrics), *(c["target"] for c in confusion)]))
    data: dict[str, Any] = {}
    for target in targets:
        rows = [m for m in metrics if m["target"] == target]
        data[f"eval/{target}/classes"] = wandb.Table(
            columns=["label", "precision", "recall", "f1", "support", "accuracy"],
            data=[[m["label"], m["precision"], m["recall"], m["f1"], m["support"], m["accuracy"]] for m in rows])
        cells = [c for c in confusion if c["target"] == target]
        names = classes.get(target) or sorted({c["true_label"] for c in cells} | {c["predicted_label"] for c in cells})
        data[f"eval/{target}/confusion"] = _confusion_chart(wandb, names, cells, f"{target} confusion, run {run_id}")
    data["eval/verification"] = wandb.Table(
        columns=["subset", "score", "auc", "n_pairs", "n_positive"],
        data=[[v["subset"], v["score"], v["auc"], v["n_pairs"], v["n_positive"]] for v in verification])

    wandb_run = _init(wandb_id, run_id, folder)
    try:
        wandb_run.log(data)
        wandb_run.summary.update(evaluation_summary(run, verification))
    finally:
        wandb_run.finish()
    return True


def evaluation_summary(run: dict[str, Any], verification: list[dict[str, Any]]) -> dict[str, float | int]:
    """The scalar evaluation figures of a ``runs`` row and its verification rows, keyed as they
    appear in the wandb summary (figures that are NULL, e.g. no unseen artists, are left out)."""
    summary = run["summary"] or {}
    columns = ("test_accuracy", "macro_f1", "top3_accuracy", "open_set_auroc")
    out: dict[str, Any] = {f"eval/{k}": run[k] for k in columns}
    out.update({f"eval/{k}": summary.get(k) for k in ("chance", "n_test")})
    for target, figures in (summary.get("targets") or {}).items():
        out.update({f"eval/{target}/{k}": v for k, v in figures.items()})
    out.update({f"eval/open_set/{k}": v for k, v in (summary.get("open_set") or {}).items()})
    for v in verification:
        out[f"eval/verification/{v['subset']}/{v['score']}/auc"] = v["auc"]
        out[f"eval/verification/{v['subset']}/{v['score']}/n_pairs"] = v["n_pairs"]
    return {k: v for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def log_champion(run_id: int, model_file: Path, url: str | None = None, *, folder: Path | None = None) -> bool:
    """Log the promoted run's model as a version of the ``painter-classifier`` model artifact,
    aliased ``champion`` and ``run-<id>``, into the run's wandb run; ``False`` when tracking is
    off for it.

    Args:
        run_id: the promoted run.
        model_file: the model on this host (a store key fetched to a local file first).
        url: the painting database.
        folder: as for :func:`start_training`; leave it ``None`` outside tests.
    """
    model_file = Path(model_file)
    with db.connect(url) as conn:
        run = _tracked_run(conn, run_id)
    wandb_id = _tracked_id(run["config"].get("wandb", True), run["wandb_id"], run_id)
    if wandb_id is None:
        return False
    if not model_file.is_file():
        raise PaintingMLError(f"model file {model_file} of run {run_id} not found; fetch it from the store first")
    wandb = _wandb()

    artifact = wandb.Artifact(MODEL_ARTIFACT, type="model", metadata={
        "run_id": run_id, "dataset_version_id": run["dataset_version_id"], "macro_f1": run["macro_f1"],
        "test_accuracy": run["test_accuracy"], "classes": run["classes"]})
    artifact.add_file(str(model_file), name=model_file.name)
    wandb_run = _init(wandb_id, run_id, folder)
    try:
        wandb_run.log_artifact(artifact, aliases=["champion", f"run-{run_id}"])
        wandb_run.summary["champion"] = True
    finally:
        wandb_run.finish()
    return True


def _tracked_id(enabled: bool, wandb_id: str | None, run_id: int) -> str | None:
    """The wandb id to log run ``run_id`` into; None when tracking is off for it or it has no id."""
    if not enabled or get_settings().wandb_mode == "disabled":
        return None
    if not wandb_id:
        log.info("run %s has no wandb id; not logged to wandb", run_id)
        return None
    return wandb_id


def _tracked_run(conn: db.Connection, run_id: int) -> dict[str, Any]:
    run = db.fetch_one(conn, db.sql("tracking", "tracked_run"), {"id": run_id})
    if run is None:
        raise PaintingMLError(f"run {run_id} does not exist; `painting-ml runs` lists the runs")
    return run


def _init(wandb_id: str, run_id: int, folder: Path | None, config: dict[str, Any] | None = None) -> Run:
    """Create or resume the wandb run ``wandb_id``."""
    root = Path(folder) if folder is not None else get_settings().home
    root.mkdir(parents=True, exist_ok=True)
    wandb = _wandb()
    # reinit="create_new": a run still open in this process (a caller's, or training's in the
    # same process) is left alone and this one is independent of it, instead of wandb.init
    # handing back the open run and logging evaluation into the wrong one.
    return wandb.init(project=PROJECT, id=wandb_id, name=f"run-{run_id}", resume="allow", dir=str(root),
                      mode=get_settings().wandb_mode, config=config, reinit="create_new")


def _wandb() -> types.ModuleType:
    """wandb, imported on first use, quiet unless the user set ``WANDB_SILENT`` themselves."""
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    return wandb


def _confusion_chart(wandb: types.ModuleType, names: list[str], cells: list[dict[str, Any]], title: str) -> Any:
    """The chart ``wandb.plot.confusion_matrix`` draws, built from stored counts (every cell,
    zeros included) instead of re-expanding them into one prediction per painting."""
    counts = {(c["true_label"], c["predicted_label"]): c["count"] for c in cells}
    table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"],
                        data=[[a, p, counts.get((a, p), 0)] for a in names for p in names])
    return wandb.plot_table(_CONFUSION_CHART, table, {"Actual": "Actual", "Predicted": "Predicted",
                                                     "nPredictions": "nPredictions"}, {"title": title})
