"""Train one run: build the model, fit on the dataset version, record every epoch, keep the best.

A run is keyed by ``run_key`` (stable across Airflow retries), so a retried training finds its
row and its run folder again. Each training phase has its own ``BackupAndRestore`` folder, so a
retry resumes from the last finished epoch of the phase it was in (a finished phase is never
run again) and epoch rows are upserted, never duplicated.

Whatever stops a training, its row tells: one live attempt per run key (a second one is refused),
a stop signal ends it ``interrupted`` (checkpoints kept; signals are held while Keras writes
them), an error ``failed``, a vanished process is swept ``lost`` (see ``run_status``). Each
epoch's row is written beside its checkpoint first, so a database outage loses none.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import psycopg
from numpy.typing import ArrayLike, NDArray
from psycopg.types.json import Jsonb

from painting_ml.core import db, interrupts
from painting_ml.core.artifacts import run_folder
from painting_ml.core.config import RunConfig
from painting_ml.core.errors import DatabaseError
from painting_ml.core.files import atomic_path
from painting_ml.core.store import get_store
from painting_ml.data.augment import augmented_train_items
from painting_ml.data.derived import cached_paths, long_side_for
from painting_ml.data.inputs import make_dataset
from painting_ml.data.versions import DatasetItem, load_items, target_classes, target_labels
from painting_ml.learn import epoch_history
from painting_ml.learn.accelerator import apply as apply_accelerator
from painting_ml.learn.accelerator import plan as plan_accelerator
from painting_ml.learn.models import compile_model, create_model, pretrained, set_trainable
from painting_ml.learn.run_status import RunLease, hold_run_key, mark_run_stopped, sweep_lost_runs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    """One ``fit`` call: a fine-tuning mode and learning rate over epochs [start, end)."""

    index: int
    mode: str
    stages: int
    learning_rate: float
    start: int
    end: int


def plan_phases(cfg: RunConfig) -> list[Phase]:
    """The training phases of ``cfg``: one, or two for ``fine_tune="two_phase"`` (head with the
    backbone frozen, then the last ``fine_tune_stages`` stages at a lower learning rate)."""
    if cfg.fine_tune == "two_phase":
        mode = "all" if cfg.fine_tune_stages >= 5 else "last_k"
        return [Phase(1, "frozen", 0, cfg.learning_rate, 0, cfg.head_epochs),
                Phase(2, mode, cfg.fine_tune_stages, cfg.learning_rate * cfg.fine_tune_lr_factor,
                      cfg.head_epochs, cfg.epochs)]
    return [Phase(1, cfg.fine_tune, cfg.fine_tune_stages, cfg.learning_rate, 0, cfg.epochs)]


def log_key(cfg: RunConfig, metric: str, target: str = "artist", val: bool = False) -> str:
    """The Keras log name of ``metric`` for ``target`` (``accuracy`` for a single output,
    ``artist_accuracy`` when there are several)."""
    name = metric if len(cfg.targets) == 1 else f"{target}_{metric}"
    return f"val_{name}" if val else name


def start_run(cfg: RunConfig, version_id: int, run_key: str, url: str | None = None) -> RunStart:
    """Create the run row (or find it again on retry), its folder and its lineage."""
    from painting_ml.core.lineage import code_version
    from painting_ml.data.ingest import resolve_root
    from painting_ml.learn.tracking import new_wandb_id

    with db.connect(url) as conn:
        row = db.fetch_one(conn, db.sql("runs", "insert_run"), {
            "key": run_key, "version": version_id, "config": Jsonb(cfg.to_dict()),
        }, required=True)
        run_id = int(row["id"])
        # A fresh, unique folder for a new run; a retry (same run_key) gets the stored one back, with
        # its checkpoints. Ids alone are not enough: a reset database hands out run 1 again.
        key = row["run_dir"] or f"runs/run_{run_id}_{uuid.uuid4().hex[:8]}"
        key = db.fetch_one(conn, db.sql("runs", "set_run_dir"), {"id": run_id, "dir": key}, required=True)["run_dir"]
        version, commit = code_version()
        wandb_id = db.fetch_one(conn, db.sql("runs", "set_lineage"), {
            "id": run_id, "version": version, "commit": commit, "root": resolve_root(cfg.data_dir),
            "wandb_id": row["wandb_id"] or new_wandb_id()}, required=True)["wandb_id"]
    return RunStart(run_id, key, run_folder(key), wandb_id, row["model_path"], int(row["dataset_version_id"]))


@dataclass(frozen=True)
class RunStart:
    """A run's row id, its folder (store key and this host's path), wandb id, when its training
    already finished its model's key, and the dataset version it trains on."""

    run_id: int
    key: str
    folder: Path
    wandb_id: str
    model_key: str | None
    version_id: int


class EpochRecorder(keras.callbacks.Callback):
    """Records each epoch's losses, accuracies, learning rate and all Keras logs: first in the run's
    history file (this callback goes before the checkpoint callbacks, so the row is on disk before
    its checkpoint), then, through :attr:`commit` (a callback that goes after them), in ``epochs``
    and to wandb."""

    def __init__(self, cfg: RunConfig, run_id: int, phase: int, url: str | None, wandb_run: Any = None,
                 run_dir: Path | None = None) -> None:
        super().__init__()
        self.cfg, self.run_id, self.phase, self.url, self.wandb_run = cfg, run_id, phase, url, wandb_run
        self.run_dir = run_dir
        self._t0 = time.perf_counter()
        self._row: dict[str, Any] | None = None
        self.commit = _CommitEpoch(self)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        figures = {k: float(v) for k, v in (logs or {}).items()}
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self._row = {
            "run": self.run_id, "epoch": epoch + 1, "phase": self.phase, "loss": figures.get("loss"),
            "accuracy": figures.get(log_key(self.cfg, "accuracy")), "val_loss": figures.get("val_loss"),
            "val_accuracy": figures.get(log_key(self.cfg, "accuracy", val=True)), "lr": lr,
            "seconds": time.perf_counter() - self._t0, "metrics": figures,
        }
        if self.run_dir is not None:
            epoch_history.append(self.run_dir, self._row)

    def write(self) -> None:
        """Upsert the last epoch's row into ``epochs`` (and log it to wandb)."""
        row, self._row = self._row, None
        if row is None:
            return
        with db.connect(self.url) as conn:
            epoch_history.upsert(conn, row)
        if self.wandb_run is not None:
            self.wandb_run.log({**row["metrics"], "learning_rate": row["lr"], "phase": self.phase,
                                "seconds": row["seconds"]}, step=row["epoch"])
        log.info("run %s epoch %d (phase %d): %s", self.run_id, row["epoch"], self.phase, row["metrics"])


class _CommitEpoch(keras.callbacks.Callback):
    def __init__(self, recorder: EpochRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.recorder.write()


class StopGuard(keras.callbacks.Callback):
    """Raises a stop signal held during ``fit`` between batches (never while a checkpoint is
    being written), and stops when another attempt took the run key meanwhile."""

    def __init__(self, lease: RunLease | None) -> None:
        super().__init__()
        self.lease = lease

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        interrupts.check()

    def on_test_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        interrupts.check()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        interrupts.check()
        if self.lease is not None:
            self.lease.verify()


def class_sample_weights(labels: ArrayLike, n_classes: int) -> NDArray[np.float32] | None:
    """Per-image weights inversely proportional to the artist's train count (None when balanced).

    Keras refuses ``class_weight`` on multi-output models; per-sample weights work for both."""
    ids = np.asarray(labels)
    counts = np.bincount(ids, minlength=n_classes)
    if counts.min() == counts.max():
        return None
    per_class = len(ids) / (n_classes * np.maximum(counts, 1))
    return per_class[ids].astype(np.float32)


def _train_set(version_id: int, items: list[DatasetItem], long_side: int,
               url: str | None) -> list[tuple[str, DatasetItem]]:
    """(local path, item) for the train split's image-cache copies plus its offline-augmented copies."""
    train_items = [i for i in items if i.split == "train"]
    by_file = {i.filename: i for i in train_items}
    aug = [(p, by_file[src]) for p, src in augmented_train_items(version_id, url) if src in by_file]
    return list(zip(cached_paths(train_items, long_side, url), train_items, strict=True)) + aug


BEST_TMP = ".best.tmp.keras"


class AtomicBest(keras.callbacks.Callback):
    """Moves the checkpoint ModelCheckpoint just wrote into ``best.keras`` with one rename, so a
    process killed while saving never leaves a half-written ``best.keras``."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        tmp = self.run_dir / BEST_TMP
        if tmp.is_file():
            os.replace(tmp, self.run_dir / "best.keras")


def train(cfg: RunConfig, version_id: int, run_key: str, url: str | None = None,
          callbacks: Sequence[keras.callbacks.Callback] = ()) -> int:
    """Train ``cfg`` on dataset version ``version_id``; return the run id.

    The best model (by artist validation accuracy) is kept as ``<run folder>/model.keras`` (no
    optimizer state) with the class names of every target in ``classes.json`` and ``runs.classes``,
    both in the artifact store; checkpoints are deleted once the run is recorded as trained.
    ``callbacks`` are added to every phase (tests use them to inject faults).

    The run key is held for the whole training (:func:`~painting_ml.learn.run_status.hold_run_key`),
    so a second live attempt is refused with :class:`~painting_ml.learn.run_status.RunKeyBusy`
    before it touches the row. When training raises, the run is marked ``failed`` with the error
    (``interrupted`` for a stop signal, which raises :class:`~painting_ml.core.interrupts.Interrupted`)
    before the exception propagates; a retry with the same ``run_key`` sets it back to ``running``
    and resumes from its checkpoint.

    Raises:
        RunKeyBusy: another live process trains ``run_key``.
        DatabaseError: the database went away mid-training (one line: its redacted URL, the run key).
        Interrupted: SIGTERM, SIGINT or SIGHUP arrived.
    """
    with hold_run_key(run_key, url) as lease, interrupts.interruptible():
        sweep_lost_runs(url)
        start = start_run(cfg, version_id, run_key, url)
        lease.attach(start.run_id)
        if start.version_id != version_id:  # the catalog changed since the run began: its checkpoints are of that one
            log.warning("run %d (%s) began on dataset version %d and resumes on it (not on %d)", start.run_id,
                        run_key, start.version_id, version_id)
            version_id = start.version_id
        if start.model_key and get_store().exists(start.model_key):
            log.info("run %d (%s) finished training already; its model is %s", start.run_id, run_key, start.model_key)
            return start.run_id
        try:
            return _train(cfg, version_id, start, url, callbacks, lease)
        except BaseException as exc:  # a signal or task timeout too: the row must not stay 'running'
            lease.release()  # first: the row is only marked while no live attempt holds the key
            mark_run_stopped(run_key, exc, url)
            if isinstance(exc, DatabaseError | psycopg.OperationalError):  # an outage: say what resumes
                what = str(exc) if isinstance(exc, DatabaseError) else (
                    f"lost the painting database {db.redact_url(lease.url)}: {db.redact_url(str(exc), lease.url)}")
                raise DatabaseError(f"run {start.run_id} stopped: {' '.join(what.split())[:500]} — its checkpoints "
                                    f"and epoch rows are kept for a rerun with the run key {run_key!r} once the "
                                    "database is back") from None
            raise


def _train(cfg: RunConfig, version_id: int, start: RunStart, url: str | None,
           callbacks: Sequence[keras.callbacks.Callback], lease: RunLease | None = None) -> int:
    from painting_ml.learn.tracking import start_training

    run_id, run_dir = start.run_id, start.folder
    epoch_history.reconcile(run_id, run_dir, url)  # rows a database outage kept out of the table
    callbacks = [StopGuard(lease), *callbacks]
    artists, items = load_items(version_id, url)
    classes = target_classes(items, artists, cfg.targets)
    empty = [t for t, names in classes.items() if len(names) < 2]
    if empty:
        from painting_ml.core.errors import DataError

        raise DataError(f"target(s) {empty} have fewer than 2 known classes in dataset version {version_id}; "
                        "fill the style/genre columns of the CSV or train with targets=['artist']")
    with db.connect(url) as conn:
        conn.execute(db.sql("runs", "set_classes"), {"id": run_id, "classes": Jsonb(classes)})
    with atomic_path(run_dir / "classes.json") as tmp:
        tmp.write_text(json.dumps(classes))
    long_side = long_side_for(cfg.image_size)
    train_set = _train_set(version_id, items, long_side, url)
    train_items = [i for _, i in train_set]
    val_items = [i for i in items if i.split == "val"]
    train_labels = target_labels(train_items, classes)
    val_labels = target_labels(val_items, classes)
    weights = class_sample_weights(train_labels["artist"], len(artists)) if cfg.class_weights else None
    train_y: list[int] | dict[str, list[int]] = train_labels
    val_y: list[int] | dict[str, list[int]] = val_labels
    if len(cfg.targets) == 1:  # a single output takes plain labels
        train_y, val_y = train_labels["artist"], val_labels["artist"]

    # Before any dataset: the plan may split the CPU into devices, which the backend allows only before it starts.
    accel = plan_accelerator()
    keras.utils.set_random_seed(cfg.seed)
    dataset = functools.partial(make_dataset, image_size=cfg.image_size, batch_size=cfg.batch_size, seed=cfg.seed,
                                cache=cfg.cache, resize_mode=cfg.resize_mode)
    train_ds = dataset([p for p, _ in train_set], train_y, shuffle=True, sample_weights=weights,
                       cache_dir=run_dir / "cache" / "train")
    val_ds = dataset(cached_paths(val_items, long_side, url), val_y, shuffle=False,
                     cache_dir=run_dir / "cache" / "val")

    log.info("run %d accelerator plan: %s", run_id, accel.to_dict())
    log.info("run %d: %d train (%d augmented), %d val images, %d artists, targets %s", run_id,
             len(train_set), len(train_set) - sum(i.split == "train" for i in items), len(val_items),
             len(artists), list(cfg.targets))
    best = run_dir / "best.keras"
    wandb_run = start_training({**cfg.to_dict(), "run_id": run_id}, run_id, start.wandb_id, enabled=cfg.wandb)
    try:
        with apply_accelerator(accel):
            model = create_model(cfg, {t: len(n) for t, n in classes.items()})
            for phase in plan_phases(cfg):
                _fit_phase(model, cfg, phase, run_id, run_dir, train_ds, val_ds, url, wandb_run,
                           accel.jit_compile, callbacks)
    finally:
        if wandb_run is not None:
            wandb_run.finish()
    if not best.is_file():  # resumed after the last epoch already ran: keep the restored weights
        with atomic_path(best, suffix=".keras") as tmp:
            model.save(tmp)
    model_key = keep_model(run_id, run_dir, url)
    with db.connect(url) as conn:
        conn.execute(db.sql("runs", "finish_training"), {"id": run_id, "model": model_key})
    drop_scratch(run_dir)  # only now: a crash before the row says "trained" can still resume
    return run_id


#: What a finished run keeps: the model without optimizer state and its class list.
MODEL_FILE = "model.keras"
#: What only a running (or resumable) training needs; deleted when it finishes.
SCRATCH = ("best.keras", BEST_TMP, "backup", "cache", "phase1_end.weights.h5", "phase2_end.weights.h5")


def keep_model(run_id: int, run_dir: Path, url: str | None = None) -> str:
    """Turn the finished training's folder into what is kept: ``model.keras`` (the best weights, no
    optimizer state — about a third of the checkpoint's size for Adam) and ``classes.json``, both put
    in the artifact store and recorded (sha256 in ``artifacts``). Returns the model's key."""
    from painting_ml.core.artifacts import record_artifact

    best = keras.models.load_model(run_dir / "best.keras", compile=False)  # no optimizer: not saved
    with atomic_path(run_dir / MODEL_FILE, suffix=".keras") as tmp:
        best.save(tmp)
    with db.connect(url) as conn:
        key = record_artifact(conn, run_id, "model", run_dir / MODEL_FILE)
        record_artifact(conn, run_id, "classes", run_dir / "classes.json")
    return key


def drop_scratch(run_dir: Path) -> None:
    """Delete what only a running training needs: resume checkpoints, phase files, image cache."""
    import shutil

    for name in SCRATCH:
        target = run_dir / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def _fit_phase(model: keras.Model, cfg: RunConfig, phase: Phase, run_id: int, run_dir: Path,
               train_ds: Any, val_ds: Any, url: str | None, wandb_run: Any, jit_compile: bool | str,
               extra_callbacks: Sequence[keras.callbacks.Callback]) -> None:
    """Run one phase, or skip it when a previous attempt finished it (its end weights exist)."""
    done = run_dir / f"phase{phase.index}_end.weights.h5"
    set_trainable(model, phase.mode, phase.stages, freeze_bn=pretrained(cfg))
    compile_model(model, cfg, phase.learning_rate, jit_compile)
    if done.is_file():
        with warnings.catch_warnings():  # the file's optimizer state belongs to that phase; not needed
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(done)
        log.info("run %d phase %d already finished; loaded its weights", run_id, phase.index)
        return
    with db.connect(url) as conn:
        best_so_far = db.fetch_one(conn, db.sql("runs", "best_val_accuracy"), {"id": run_id}, required=True)["best"]
    monitor = log_key(cfg, "accuracy", val=True)
    # The epoch's row goes to the history file before its checkpoint and to the table after it
    # (see epoch_history); the learning rate it records is the one the epoch ran with.
    recorder = EpochRecorder(cfg, run_id, phase.index, url, wandb_run, run_dir=run_dir)
    callbacks = [
        recorder,
        # double_checkpoint: a process killed while writing the checkpoint resumes from the one before.
        keras.callbacks.BackupAndRestore(str(run_dir / "backup" / f"phase{phase.index}"), delete_checkpoint=False,
                                         double_checkpoint=True),
        # A later phase (or a resumed attempt) only replaces best.keras when it beats every epoch so far.
        keras.callbacks.ModelCheckpoint(str(run_dir / BEST_TMP), monitor=monitor, mode="max",
                                        save_best_only=True, initial_value_threshold=best_so_far),
        AtomicBest(run_dir),
        recorder.commit,
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=cfg.lr_patience, min_lr=1e-6),
        *extra_callbacks,
    ]
    if cfg.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.early_stopping_patience))
    log.info("run %d phase %d: %s (stages %d), lr %g, epochs %d..%d", run_id, phase.index, phase.mode,
             phase.stages, phase.learning_rate, phase.start + 1, phase.end)
    # BackupAndRestore hands the restored epoch to fit through this attribute, and it outlives
    # the call; clear it so a restored phase 1 does not shift phase 2's first epoch.
    model._initial_epoch = None
    from painting_ml.core.progress import enabled as progress_enabled

    with interrupts.deferred():  # a stop signal is raised between batches (StopGuard), not mid-checkpoint
        model.fit(train_ds, validation_data=val_ds, epochs=phase.end, initial_epoch=phase.start,
                  callbacks=callbacks, verbose=1 if progress_enabled() else 2,
                  shuffle=False)  # the tf.data pipeline shuffles; Keras would only warn
    with atomic_path(done, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
