"""Train one run: build the model, fit on the dataset version, record every epoch, keep the best.

A run is keyed by ``run_key`` (stable across Airflow retries), so a retried training finds its
row and its run folder again; Keras' ``BackupAndRestore`` resumes from the last finished epoch and
epoch rows are upserted, never duplicated.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import keras
import numpy as np
from psycopg.types.json import Jsonb

from painting_ml import db
from painting_ml.accelerator import apply as apply_accelerator
from painting_ml.accelerator import plan as plan_accelerator
from painting_ml.augmentation import augmented_train_items
from painting_ml.config import RunConfig
from painting_ml.data import make_dataset
from painting_ml.datasets import load_items
from painting_ml.models import create_model, create_optimizer
from painting_ml.settings import get_settings

log = logging.getLogger(__name__)


def start_run(cfg: RunConfig, version_id: int, run_key: str, url: str | None = None) -> tuple[int, Path]:
    """Create the run row (or find it again on retry) and its folder."""
    root = get_settings().artifacts_dir / "runs"
    with db.connect(url) as conn:
        row = conn.execute(db.sql("runs", "insert_run"), {
            "key": run_key, "version": version_id, "config": Jsonb(cfg.to_dict()),
        }).fetchone()
        run_id = int(row[0])
        run_dir = Path(row[1]) if row[1] else root / f"run_{run_id}"
        conn.execute(db.sql("runs", "set_run_dir"), {"id": run_id, "dir": str(run_dir)})
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_id, run_dir


class EpochRecorder(keras.callbacks.Callback):
    """Upserts each epoch's losses, accuracies and learning rate into ``epochs``."""

    def __init__(self, run_id: int, url: str | None, wandb_run=None):
        super().__init__()
        self.run_id, self.url, self.wandb_run = run_id, url, wandb_run
        self._t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {
            "run": self.run_id, "epoch": epoch + 1, "loss": logs.get("loss"),
            "accuracy": logs.get("accuracy"), "val_loss": logs.get("val_loss"),
            "val_accuracy": logs.get("val_accuracy"), "lr": lr,
            "seconds": time.perf_counter() - self._t0,
        }
        with db.connect(self.url) as conn:
            conn.execute(db.sql("runs", "upsert_epoch"), row)
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in row.items() if k not in ("run",)}, step=epoch + 1)
        log.info("run %s epoch %d: %s", self.run_id, epoch + 1, row)


def _start_wandb(cfg: RunConfig, run_id: int, run_dir: Path):
    if not cfg.wandb or get_settings().wandb_mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    # The API key, when online, comes only from the environment (WANDB_API_KEY), never the config.
    return wandb.init(project="painting_ml", name=f"run-{run_id}", id=f"painting-run-{run_id}",
                      resume="allow", dir=str(run_dir), mode=get_settings().wandb_mode,
                      config={**cfg.to_dict(), "run_id": run_id})


def train(cfg: RunConfig, version_id: int, run_key: str, url: str | None = None) -> int:
    """Train ``cfg`` on dataset version ``version_id``; return the run id.

    The best model (by validation accuracy) is saved as ``<run_dir>/best.keras``.
    """
    run_id, run_dir = start_run(cfg, version_id, run_key, url)
    artists, items = load_items(version_id, url)
    train_items = [i for i in items if i.split == "train"]
    val_items = [i for i in items if i.split == "val"]
    label_of = {i.filename: i.label for i in train_items}
    aug = [(p, label_of[src]) for p, src in augmented_train_items(version_id, url) if src in label_of]
    train_paths = [i.path for i in train_items] + [p for p, _ in aug]
    train_labels = [i.label for i in train_items] + [y for _, y in aug]

    keras.utils.set_random_seed(cfg.seed)
    common = dict(image_size=cfg.image_size, batch_size=cfg.batch_size, seed=cfg.seed, cache=cfg.cache,
                  resize_mode=cfg.resize_mode)
    train_ds = make_dataset(train_paths, train_labels, shuffle=True, cache_dir=run_dir / "cache" / "train", **common)
    val_ds = make_dataset([i.path for i in val_items], [i.label for i in val_items], shuffle=False,
                          cache_dir=run_dir / "cache" / "val", **common)
    class_weight = None
    if cfg.class_weights:
        counts = np.bincount(train_labels, minlength=len(artists))
        if counts.min() != counts.max():  # balanced sets need none
            class_weight = {i: float(len(train_labels) / (len(artists) * max(c, 1))) for i, c in enumerate(counts)}

    accel = plan_accelerator()
    with apply_accelerator(accel):
        model = create_model(cfg, len(artists))
        model.compile(optimizer=create_optimizer(cfg.optimizer, cfg.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=accel.jit_compile)
    log.info("run %d accelerator plan: %s", run_id, accel.to_dict())
    best = run_dir / "best.keras"
    wandb_run = _start_wandb(cfg, run_id, run_dir)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(str(best), monitor="val_accuracy", save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=2, min_lr=1e-6),
        EpochRecorder(run_id, url, wandb_run),
    ]
    log.info("run %d: %d train (%d augmented), %d val images, %d artists", run_id,
             len(train_paths), len(aug), len(val_items), len(artists))
    try:
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks, verbose=2,
                  class_weight=class_weight)
    finally:
        if wandb_run is not None:
            wandb_run.finish()
    if not best.is_file():  # resumed after the last epoch already ran: keep the restored weights
        model.save(best)
    with db.connect(url) as conn:
        conn.execute(db.sql("runs", "finish_training"), {"id": run_id, "model": str(best)})
    return run_id
