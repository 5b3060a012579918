"""The retraining steps, called the same way by the DAG tasks and the CLI.

Each step takes the run config plus small ids and returns small JSON-able values (ids, paths,
count dicts) — what fits in an Airflow XCom.
"""

from __future__ import annotations

import logging
import uuid

from painting_ml.core import db
from painting_ml.core.config import RunConfig

log = logging.getLogger(__name__)


def check_config_step(cfg: RunConfig) -> dict:
    """The run's first second: the config is valid (it was built) and its weights file exists.

    Raises:
        ConfigError: one line saying where to put the missing weights file.
    """
    from painting_ml.core.weights import check_weights

    check_weights(cfg.weights, cfg.backbone)
    return {"weights": cfg.weights, "backbone": cfg.backbone, "image_size": cfg.image_size,
            "optimizers": list(cfg.optimizers), "fingerprint": cfg.fingerprint()}


def migrate_step() -> list[str]:
    """Apply pending schema migrations (the DAGs' first task); returns what was applied."""
    return db.migrate()


def ingest_step(cfg: RunConfig) -> dict:
    """Ingest the data folder when its files changed since the last ingest (else a no-op)."""
    from painting_ml.data.ingest import ingest_if_changed

    return ingest_if_changed(cfg.data_dir) or {"unchanged": True, "data_dir": cfg.data_dir}


def folder_settled_step(data_dir: str, quiet_seconds: float) -> tuple[bool, str]:
    """Whether the data folder has been left alone for ``quiet_seconds`` (two scans agree)."""
    from painting_ml.data.settle import folder_settled

    return folder_settled(data_dir, quiet_seconds)


def ingest_if_changed_step(data_dir: str) -> dict | None:
    """The ingest DAG's step: ingest only when the folder changed; None when nothing did."""
    from painting_ml.data.ingest import ingest_if_changed

    return ingest_if_changed(data_dir)


def select_artists_step(cfg: RunConfig) -> dict:
    from painting_ml.data.selection import select_artists

    return select_artists(cfg).to_dict()


def split_step(cfg: RunConfig, selection: dict) -> int:
    from painting_ml.data.versions import create_dataset_version
    from painting_ml.data.selection import Selection

    return create_dataset_version(cfg, Selection.from_dict(selection))


def validate_step(cfg: RunConfig, version_id: int) -> dict:
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


def evaluate_step(run_id: int) -> dict:
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


def compare_step(run_ids: list[int]) -> dict:
    from painting_ml.results.comparison import compare_runs

    return compare_runs(run_ids)


def promote_step(cfg: RunConfig, run_id: int) -> dict:
    """The promotion decision with the run's test accuracy and macro-F1 (the summary mail's content)."""
    from painting_ml.results.promotion import promote

    decision = promote(run_id, cfg.max_recall_drop, min_macro_f1=cfg.min_macro_f1,
                       allow_artist_set_change=cfg.allow_artist_set_change).to_dict()
    with db.connect() as conn:
        scores = db.fetch_one(conn, db.sql("runs", "run_summary"), {"id": run_id}) or {}
        run = db.fetch_one(conn, db.sql("runs", "get_run"), {"id": run_id})
    if decision["promoted"]:  # the wandb model artifact gets the alias "champion"
        from painting_ml.core.store import get_store
        from painting_ml.learn.tracking import log_champion

        log_champion(run_id, get_store().fetch(run["model_path"]))
    return {**decision, "test_accuracy": scores.get("test_accuracy"), "macro_f1": scores.get("macro_f1")}


def report_step(run_id: int) -> str:
    from painting_ml.results.report import render_report

    return str(render_report(run_id))


def prepare_and_train(cfg: RunConfig, run_key: str | None = None) -> dict:
    """Check the weights file, ingest, select, split, validate (the data-quality gate), augment
    (all idempotent) and train, in this process (the CLI's ``painting-ml train``). The same
    ``run_key`` resumes that run from its last checkpoint. The schema is migrated first (a no-op
    when it is current)."""
    check_config_step(cfg)
    migrate_step()
    ingest_step(cfg)
    selection = select_artists_step(cfg)
    version_id = split_step(cfg, selection)
    validate_step(cfg, version_id)
    augment_step(cfg, version_id)
    run_id = train_step(cfg, version_id, run_key or f"cli:{uuid.uuid4().hex}")
    with db.connect() as conn:
        model_path = db.fetch_one(conn, db.sql("runs", "get_run"), {"id": run_id})["model_path"]
    return {"run_id": run_id, "dataset_version_id": version_id, "model_path": model_path}


def run_all(cfg: RunConfig, run_key: str | None = None) -> dict:
    """Every step in order, in this process (the CLI's ``painting-ml run``; no Airflow)."""
    trained = prepare_and_train(cfg, run_key)
    version_id, run_id = trained["dataset_version_id"], trained["run_id"]
    summary = evaluate_step(run_id)
    summary["mosaics"] = mosaics_step(cfg, run_id)
    summary["report"] = report_step(run_id)
    summary["dataset_version_id"] = version_id
    return summary


def gc_step(dry_run: bool = False, keep_runs: int | None = None) -> dict:
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


def plan_attribution_step(run_id: int) -> dict:
    """How many shards the champion's unscored paintings split into (``shards`` 0: nothing to do)."""
    from painting_ml.results.attribution import plan_attribution

    return plan_attribution(run_id)


def attribute_shard_step(run_id: int, shard: int, shards: int) -> dict:
    from painting_ml.results.attribution import score_shard

    return score_shard(run_id, shard, shards)


def finish_attribution_step(run_id: int) -> dict:
    from painting_ml.results.attribution import finish_attribution

    return finish_attribution(run_id)
