"""The retraining steps, called the same way by the DAG tasks and the CLI.

Each step takes the run config plus small ids and returns small JSON-able values (ids, paths,
count dicts) — what fits in an Airflow XCom.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from painting_ml.core import db
from painting_ml.core.config import RunConfig

log = logging.getLogger(__name__)


def check_config_step(cfg: RunConfig) -> dict[str, Any]:
    """The run's first check, before any data step: the config is valid (it was built), the
    artist aliases file reads, the artifact store answers and takes a write, and the weights file
    is there and fits the backbone (the backbone is built at 32 px and the file loaded into it
    strictly: about a second for ResNet50 on a CPU).

    Raises:
        ConfigError: one line naming the file or setting and the fix (a weights mismatch in under
            300 characters; Keras' own account of it goes to the log).
        StoreError: one line naming the store (credentials hidden) and the fix.
    """
    from painting_ml.core.settings import get_settings
    from painting_ml.core.store import check_store
    from painting_ml.core.weights import check_weights
    from painting_ml.data.names import read_aliases

    check_weights(cfg.weights, cfg.backbone)
    read_aliases(get_settings().artist_aliases_file)
    check_store()
    if cfg.weights not in (None, "imagenet"):
        _check_weights_fit(cfg)
    return {"weights": cfg.weights, "backbone": cfg.backbone, "image_size": cfg.image_size,
            "optimizers": list(cfg.optimizers), "fingerprint": cfg.fingerprint()}


def _check_weights_fit(cfg: RunConfig) -> None:
    """Load the weights file into the run's backbone (built small: the weights' shapes do not depend
    on the image size); a file of another architecture is one short line, the details logged."""
    import re

    from painting_ml.core.errors import ConfigError
    from painting_ml.learn.models import create_backbone

    try:
        create_backbone(cfg.replace(image_size=32))
    except ConfigError as exc:
        text = str(exc)
        if len(text) <= 300:
            raise
        log.info("weights file %s does not fit backbone %s: %s", cfg.weights, cfg.backbone, text)  # -v shows it
        parts = re.search(r"total of (\d+) objects", text)
        raise ConfigError(f"weights file {cfg.weights} does not fit backbone {cfg.backbone} "
                          f"({parts.group(1) + ' layers' if parts else 'layers'} differ; details in the log): use "
                          f"{cfg.backbone} weights saved without the top, or the backbone the file was saved "
                          "from") from None


def migrate_step() -> list[str]:
    """Apply pending schema migrations (the DAGs' first task); returns what was applied."""
    return db.migrate()


def sweep_lost_runs_step() -> list[int]:
    """Mark ``lost`` the trainings whose process vanished (no heartbeat for
    ``PAINTING_LOST_AFTER_MINUTES`` and no live holder of their run key); their ids."""
    from painting_ml.learn.run_status import sweep_lost_runs

    return sweep_lost_runs()


def ingest_step(cfg: RunConfig) -> dict[str, Any]:
    """Ingest the data folder when its files changed since the last ingest (else a no-op)."""
    from painting_ml.data.ingest import ingest_if_changed

    return ingest_if_changed(cfg.data_dir) or {"unchanged": True, "data_dir": cfg.data_dir}


def folder_settled_step(data_dir: str, quiet_seconds: float) -> tuple[bool, str]:
    """Whether the data folder has been left alone for ``quiet_seconds`` (two scans agree)."""
    from painting_ml.data.settle import folder_settled

    return folder_settled(data_dir, quiet_seconds)


def ingest_if_changed_step(data_dir: str) -> dict[str, Any] | None:
    """The ingest DAG's step: ingest only when the folder changed; None when nothing did."""
    from painting_ml.data.ingest import ingest_if_changed

    return ingest_if_changed(data_dir)


def select_artists_step(cfg: RunConfig) -> dict[str, Any]:
    from painting_ml.data.selection import select_artists

    return select_artists(cfg).to_dict()


def split_step(cfg: RunConfig, selection: dict[str, Any]) -> int:
    from painting_ml.data.selection import Selection
    from painting_ml.data.versions import create_dataset_version

    return create_dataset_version(cfg, Selection.from_dict(selection))


def validate_step(cfg: RunConfig, version_id: int) -> dict[str, Any]:
    """The data-quality gate on the dataset version; raises DataQualityError on a breach."""
    from painting_ml.data.validation import validate_dataset

    return validate_dataset(cfg, version_id)


def augment_step(cfg: RunConfig, version_id: int) -> int:
    """The version's training-resolution copies (every split) and the train split's offline
    transforms, in the artifact store; runs where the data folder is (the default queue)."""
    from painting_ml.data.augment import augment_version
    from painting_ml.data.derived import long_side_for

    return augment_version(version_id, cfg.augment, long_side_for(cfg.image_size))


def train_step(cfg: RunConfig, version_id: int, run_key: str) -> int:
    from painting_ml.learn.training import train

    return train(cfg, version_id, run_key)


def evaluate_step(run_id: int) -> dict[str, Any]:
    """Evaluate the run, store the figures, and log them to the run's wandb run (when tracked)."""
    from painting_ml.learn.evaluation import evaluate
    from painting_ml.learn.tracking import log_evaluation

    summary = evaluate(run_id)
    log_evaluation(run_id)
    return summary


def mosaics_step(cfg: RunConfig, run_id: int) -> str:
    from painting_ml.results.mosaics import render_run_mosaics

    return str(render_run_mosaics(run_id, thumb=cfg.mosaic_thumb, columns=cfg.mosaic_columns,
                                  max_tiles=cfg.mosaic_max_tiles))


def compare_step(run_ids: list[int]) -> dict[str, Any]:
    from painting_ml.results.comparison import compare_runs

    return compare_runs(run_ids)


def promote_step(cfg: RunConfig, run_id: int) -> dict[str, Any]:
    """The promotion decision with the run's test accuracy and macro-F1 (the summary mail's content)."""
    from painting_ml.results.promotion import promote

    decision = promote(run_id, cfg.max_recall_drop, min_macro_f1=cfg.min_macro_f1,
                       allow_artist_set_change=cfg.allow_artist_set_change).to_dict()
    with db.connect() as conn:
        scores = db.fetch_one(conn, db.sql("runs", "run_summary"), {"id": run_id}) or {}
        run = db.fetch_one(conn, db.sql("runs", "get_run"), {"id": run_id}, required=True)
    if decision["promoted"]:  # the wandb model artifact gets the alias "champion"
        from painting_ml.core.store import get_store
        from painting_ml.learn.tracking import log_champion

        log_champion(run_id, get_store().fetch(run["model_path"]))
    return {**decision, "test_accuracy": scores.get("test_accuracy"), "macro_f1": scores.get("macro_f1")}


def report_step(run_id: int) -> str:
    from painting_ml.results.report import render_report

    return str(render_report(run_id))


def prepare_and_train(cfg: RunConfig, run_key: str | None = None) -> dict[str, Any]:
    """Check the weights file, ingest, select, split, validate (the data-quality gate), augment
    (all idempotent) and train, in this process (the CLI's ``painting-ml train``). The same
    ``run_key`` resumes that run from its last checkpoint. The schema is migrated first (a no-op
    when it is current). The run key is held from then on: a second live attempt with the same
    key is refused (:class:`~painting_ml.learn.run_status.RunKeyBusy`) before any step runs."""
    from painting_ml.learn.run_status import hold_run_key

    run_key = run_key or f"cli:{uuid.uuid4().hex}"
    check_config_step(cfg)
    migrate_step()
    with hold_run_key(run_key):
        ingest_step(cfg)
        selection = select_artists_step(cfg)
        version_id = split_step(cfg, selection)
        validate_step(cfg, version_id)
        augment_step(cfg, version_id)
        run_id = train_step(cfg, version_id, run_key)
    with db.connect() as conn:
        run = db.fetch_one(conn, db.sql("runs", "get_run"), {"id": run_id}, required=True)
    # A resumed run keeps the version it began on, whatever the catalog gives today.
    return {"run_id": run_id, "dataset_version_id": run["dataset_version_id"], "model_path": run["model_path"]}


def run_all(cfg: RunConfig, run_key: str | None = None) -> dict[str, Any]:
    """Every step in order, in this process (the CLI's ``painting-ml run``; no Airflow)."""
    trained = prepare_and_train(cfg, run_key)
    version_id, run_id = trained["dataset_version_id"], trained["run_id"]
    summary = evaluate_step(run_id)
    summary["mosaics"] = mosaics_step(cfg, run_id)
    summary["report"] = report_step(run_id)
    summary["dataset_version_id"] = version_id
    return summary


def gc_step(dry_run: bool = False, keep_runs: int | None = None) -> dict[str, Any]:
    """Apply the retention policy (painting_gc, ``painting-ml gc``): what was (or would be) freed."""
    from painting_ml.core.settings import get_settings
    from painting_ml.results.retention import collect_garbage

    return collect_garbage(keep_runs=get_settings().keep_runs if keep_runs is None else keep_runs, dry_run=dry_run)


# --- the champion at work (painting_attribute) --------------------------------------------------
def export_champion_step() -> int | None:
    """Write the champion's serving export if it is not there yet; its run id (None: no champion)."""
    from painting_ml.learn.export import export_serving_model
    from painting_ml.results.attribution import current_champion

    run_id = current_champion()
    if run_id is not None:
        export_serving_model(run_id)
    return run_id


def plan_attribution_step(run_id: int) -> dict[str, Any]:
    """How many shards the champion's unscored paintings split into (``shards`` 0: nothing to do)."""
    from painting_ml.results.attribution import plan_attribution

    return plan_attribution(run_id)


def attribute_shard_step(run_id: int, shard: int, shards: int) -> dict[str, Any]:
    from painting_ml.results.attribution import score_shard

    return score_shard(run_id, shard, shards)


def finish_attribution_step(run_id: int) -> dict[str, Any]:
    from painting_ml.results.attribution import finish_attribution

    return finish_attribution(run_id)


# --- the catalog audit (painting_audit) -----------------------------------------------------------
def start_audit_step(cfg: RunConfig, selection: dict[str, Any], folds: int, recipe: str,
                     audit_key: str) -> dict[str, Any]:
    """Start the label audit ``audit_key`` (or find it again on retry): its audited set, one
    dataset version per fold, its rows. ``{"audit_id", "folds": [0 .. k-1], "paintings", ...}``."""
    from painting_ml.data.selection import Selection
    from painting_ml.learn.audit import start_audit

    return start_audit(cfg, Selection.from_dict(selection), folds, recipe, audit_key)


def augment_audit_step(audit_id: int) -> list[int]:
    """Every fold version's image-cache copies and offline transforms (made once, shared by the
    folds: a copy's key is its source's hash); the fold versions' ids."""
    from painting_ml.learn.audit import audit_info, fold_config

    cfg = fold_config(audit_id)
    versions = [int(r["dataset_version_id"]) for r in audit_info(audit_id)["fold_rows"]]
    for version_id in versions:
        augment_step(cfg, version_id)
    return versions


def train_fold_step(audit_id: int, fold: int) -> int:
    """Train the audit's fold ``fold`` (the ordinary engine, resumable); its run id."""
    from painting_ml.learn.audit import train_fold

    return train_fold(audit_id, fold)


def mark_fold_failed_step(audit_key: str, fold: int, error: str) -> int | None:
    """Mark fold ``fold``'s training run failed (a try killed from outside); its run id, if any."""
    from painting_ml.learn.audit import fold_run_key
    from painting_ml.learn.run_status import mark_run_failed

    return mark_run_failed(fold_run_key(audit_key, fold), error)


def predict_fold_step(audit_id: int, fold: int) -> dict[str, Any]:
    """The fold model's probabilities and embeddings of the paintings it never saw, stored."""
    from painting_ml.learn.audit import predict_fold

    return predict_fold(audit_id, fold)


def rank_step(audit_id: int) -> dict[str, Any]:
    """cleanlab's ranking of the audit's label issues, stored; the audit's summary."""
    from painting_ml.results.label_issues import rank_label_issues

    return rank_label_issues(audit_id)


def audit_evidence_step(audit_id: int, limit: int = 24) -> dict[str, Any]:
    """Each of the top ``limit`` flagged paintings' evidence for the curator (exemplars of both
    artists, heatmaps), recorded in ``label_issues.evidence``."""
    from painting_ml.results.evidence import render_evidence

    return render_evidence(audit_id, limit=limit)


def audit_report_step(audit_id: int) -> str:
    """The audit's report.html; its store key."""
    from painting_ml.results.evidence import render_audit_report

    return render_audit_report(audit_id)


def audit_all(cfg: RunConfig, folds: int = 5, recipe: str = "head", audit_key: str | None = None,
              top: int = 10) -> dict[str, Any]:
    """The whole audit in this process (``painting-ml audit``; no Airflow): ingest, select, fold
    versions, k trainings one after another, out-of-fold predictions, cleanlab's ranking, the
    evidence and the report. The same ``audit_key`` resumes that audit (finished folds are kept).

    Returns:
        ``{"audit_id", "audited", "flagged", "seconds_per_fold", "summary", "top_issues", "report"}``.
    """
    from painting_ml.learn.audit import fail_audit
    from painting_ml.results.label_issues import top_issues

    audit_key = audit_key or f"cli:{uuid.uuid4().hex}"
    check_config_step(cfg)
    migrate_step()
    ingest_step(cfg)
    selection = select_artists_step(cfg)
    started = start_audit_step(cfg, selection, folds, recipe, audit_key)
    audit_id = int(started["audit_id"])
    try:
        augment_audit_step(audit_id)
        for fold in started["folds"]:
            train_fold_step(audit_id, fold)
            predict_fold_step(audit_id, fold)
        summary = rank_step(audit_id)
        audit_evidence_step(audit_id)
        report = audit_report_step(audit_id)
    except BaseException as exc:  # a stop signal too: the audit must not stay 'running'
        fail_audit(audit_id, f"{type(exc).__name__}: {exc}"[:500])
        raise
    return {"audit_id": audit_id, "audit_key": audit_key, "audited": summary["audited"],
            "flagged": summary["flagged"], "seconds_per_fold": summary["seconds_per_fold"], "summary": summary,
            "top_issues": top_issues(audit_id, top), "report": report}
