"""The retraining steps, called the same way by the DAG tasks and the CLI.

Each step takes the run config plus small ids and returns small JSON-able values (ids, paths,
count dicts) — what fits in an Airflow XCom.
"""

from __future__ import annotations

import logging
import uuid

from painting_ml import db
from painting_ml.config import RunConfig

log = logging.getLogger(__name__)


def ingest_step(cfg: RunConfig) -> dict:
    """Ingest the data folder when its files changed since the last ingest (else a no-op)."""
    from painting_ml.catalog import ingest_if_changed

    return ingest_if_changed(cfg.data_dir) or {"unchanged": True, "data_dir": cfg.data_dir}


def select_artists_step(cfg: RunConfig) -> dict:
    from painting_ml.selection import select_artists

    return select_artists(cfg).to_dict()


def split_step(cfg: RunConfig, selection: dict) -> int:
    from painting_ml.datasets import create_dataset_version
    from painting_ml.selection import Selection

    return create_dataset_version(cfg, Selection.from_dict(selection))


def augment_step(cfg: RunConfig, version_id: int) -> int:
    from painting_ml.augmentation import augment_version

    return augment_version(version_id, cfg.augment)


def train_step(cfg: RunConfig, version_id: int, run_key: str) -> int:
    from painting_ml.training import train

    return train(cfg, version_id, run_key)


def evaluate_step(run_id: int) -> dict:
    from painting_ml.evaluation import evaluate

    return evaluate(run_id)


def mosaics_step(cfg: RunConfig, run_id: int) -> str:
    from painting_ml.mosaics import render_run_mosaics

    return str(render_run_mosaics(run_id, thumb=cfg.mosaic_thumb, columns=cfg.mosaic_columns,
                                  max_tiles=cfg.mosaic_max_tiles))


def compare_step(run_ids: list[int]) -> dict:
    from painting_ml.comparison import compare_runs

    return compare_runs(run_ids)


def promote_step(cfg: RunConfig, run_id: int) -> dict:
    from painting_ml.promotion import promote

    return promote(run_id, cfg.max_recall_drop).to_dict()


def report_step(run_id: int) -> str:
    from painting_ml.report import render_report

    return str(render_report(run_id))


def prepare_and_train(cfg: RunConfig, run_key: str | None = None) -> dict:
    """Ingest, select, split, augment (all idempotent) and train, in this process (the CLI's
    ``painting-ml train``). The same ``run_key`` resumes that run from its last checkpoint.
    The ingest step migrates the schema first."""
    ingest_step(cfg)
    selection = select_artists_step(cfg)
    version_id = split_step(cfg, selection)
    augment_step(cfg, version_id)
    run_id = train_step(cfg, version_id, run_key or f"cli:{uuid.uuid4().hex}")
    with db.connect() as conn:
        model_path = conn.execute(db.sql("runs", "get_run"), {"id": run_id}).fetchone()[6]
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
