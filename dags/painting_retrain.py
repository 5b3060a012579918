"""
### painting_retrain

Retrains the painter classifier and keeps the best model as champion:

**ingest** (only when the data folder changed) → **select_artists** (top N by usable images,
equalised) → **split** (stratified, seeded, stored as a dataset version) → **augment** (offline
transforms of the train split) → **sweep** → **train** ×N, a mapped task, one per optimizer in
`optimizers` (ResNet50/101/18, single- or multi-task, queue and pool `gpu`) → **evaluate** ×N
(per-class metrics, confusion, top-3, open-set AUROC, verification AUC in Postgres) → **compare**
(one plot of every run's curves; best by validation accuracy) → **promote** (the gate: macro-F1 at
least the champion's on the same dataset version, no artist's recall down more than
`max_recall_drop` points) → **mosaics** ×N → **report** ×N (`report.html` per run).

Runs weekly (`PAINTING_RETRAIN_CRON`), whenever `painting_ingest` publishes the `painting_catalog`
Asset, and by hand from the UI with the typed form below. All logic lives in `painting_ml`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from painting_ml.orchestration import DEFAULT_ARGS, GPU_POOL, GPU_QUEUE, retrain_schedule
from painting_ml.settings import get_settings

DEFAULT_DATA_DIR = str(get_settings().source_dir)


def _config(**overrides):
    """The run config from this run's Params (validated; unknown keys refused)."""
    import dataclasses

    from painting_ml.config import RunConfig

    cfg = RunConfig.from_params(dict(get_current_context()["params"]))
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


@dag(
    dag_id="painting_retrain",
    schedule=retrain_schedule(),
    catchup=False,
    max_active_runs=4,
    doc_md=__doc__,
    tags=["painting_ml"],
    default_args=DEFAULT_ARGS,
    params={
        "data_dir": Param(DEFAULT_DATA_DIR, type="string", minLength=1, title="Data folder",
                          description="Folder in the Kaggle layout: all_data_info.csv and train*/test images."),
        "n_artists": Param(10, type="integer", minimum=2, maximum=1000, title="Artists",
                           description="How many artists to train on (top N by usable paintings)."),
        "strategy": Param("top", type="string", enum=["top", "balanced", "capped", "list"], title="Artist selection",
                          description="top: most paintings; balanced: most similar counts; capped: top N "
                                      "undersampled to `cap`; list: the names in `artists`."),
        "artists": Param([], type="array", items={"type": "string"}, title="Artist list",
                         description="Explicit artist names (implies strategy=list); empty for the other strategies."),
        "cap": Param(500, type="integer", minimum=3, title="Per-artist cap",
                     description="Maximum paintings per artist for strategy=capped."),
        "augment": Param(["hflip"], type="array", items={"type": "string", "pattern": "^(hflip|vflip|hvflip|rot[0-9]{1,3}(\\.[0-9]+)?)$"},
                         title="Offline augmentation",
                         description="Transforms materialised once for the train split: hflip, vflip, hvflip, rot90, rot45, ..."),
        "online_augment": Param(True, type="boolean", title="Online augmentation",
                                description="Random rotation 20°, shift 0.2, shear 0.2, zoom 0.2 and flip inside the model while training."),
        "epochs": Param(3, type="integer", minimum=1, maximum=1000, title="Epochs",
                        description="Training epochs."),
        "image_size": Param(64, type="integer", minimum=32, maximum=1024, title="Image size (px)",
                            description="Square training size; 32-64 on CPU, 224 on a GPU."),
        "batch_size": Param(32, type="integer", minimum=1, maximum=4096, title="Batch size",
                            description="Images per training step."),
        "backbone": Param("resnet50", type="string", enum=["resnet50", "resnet101", "resnet18"], title="Backbone",
                          description="ResNet50 (default), ResNet101 or ResNet18 (basic blocks)."),
        "weights": Param(None, type=["null", "string"], title="Backbone weights",
                         description="Empty: random init; 'imagenet' where downloads work; or the path of a "
                                     "local weights file without top (the offline path)."),
        "targets": Param(["artist"], type="array", minItems=1, maxItems=3, uniqueItems=True,
                         items={"type": "string", "enum": ["artist", "style", "genre"]}, title="Targets",
                         description="What the model predicts: artist, plus style and/or genre for multi-task."),
        "loss_weights": Param({}, type="object", additionalProperties={"type": "number", "minimum": 0},
                              title="Loss weights", description="Per-target loss weight, e.g. {\"style\": 0.5}; missing = 1."),
        "fine_tune": Param("all", type="string", enum=["all", "frozen", "last_k", "two_phase"], title="Fine-tuning",
                           description="all: train everything; frozen: head only; last_k: last `fine_tune_stages` "
                                       "stages; two_phase: head first, then unfreeze at a lower LR."),
        "fine_tune_stages": Param(1, type="integer", minimum=1, maximum=5, title="Stages to fine-tune",
                                  description="ResNet stages (of 5) trained by last_k and by two_phase's 2nd phase."),
        "head_epochs": Param(1, type="integer", minimum=1, title="Head epochs (two_phase)",
                             description="Epochs of phase 1 (backbone frozen) in two_phase; must be < epochs."),
        "optimizers": Param(["adam", "rmsprop", "sgd"], type="array", minItems=1, uniqueItems=True,
                            items={"type": "string", "enum": ["adam", "adamw", "rmsprop", "sgd"]},
                            title="Optimizers to compare",
                            description="One mapped training per optimizer (sgd: momentum 0.9); the best by "
                                        "validation accuracy goes to the promotion gate."),
        "max_recall_drop": Param(5.0, type="number", minimum=0, maximum=100, title="Max recall drop (points)",
                                 description="Promotion gate: the most any artist's recall may fall against the champion."),
        "gradient_accumulation_steps": Param(1, type="integer", minimum=1, maximum=1024,
                                             title="Gradient accumulation steps",
                                             description="Apply gradients every N batches (effective batch N x batch size)."),
        "label_smoothing": Param(0.0, type="number", minimum=0, maximum=0.5, title="Label smoothing",
                                 description="Cross-entropy label smoothing."),
        "head_units": Param(256, type="integer", minimum=0, maximum=8192, title="Head units",
                            description="ReLU dense layer before the outputs (0 = none)."),
        "dropout": Param(0.4, type="number", minimum=0, maximum=0.95, title="Dropout",
                         description="Dropout before the output layers."),
        "l2": Param(0.01, type="number", minimum=0, maximum=1, title="L2",
                    description="L2 penalty on the head's dense kernels."),
        "learning_rate": Param(1e-3, type="number", exclusiveMinimum=0, maximum=10, title="Learning rate",
                               description="Initial learning rate (reduced on plateau)."),
        "mosaic_thumb": Param(96, type="integer", minimum=16, maximum=512, title="Mosaic thumbnail size (px)",
                              description="Longest side of each painting in the mosaics (aspect ratio kept)."),
        "mosaic_columns": Param(6, type="integer", minimum=1, maximum=50, title="Mosaic columns",
                                description="Thumbnails per row in the mosaics."),
        "mosaic_max_tiles": Param(36, type="integer", minimum=1, maximum=10000, title="Mosaic size",
                                  description="Most thumbnails per mosaic."),
        "seed": Param(42, type="integer", minimum=0, title="Seed",
                      description="Seed for selection, split, augmentation and weight init."),
    },
)
def painting_retrain():
    @task
    def ingest() -> dict:
        from painting_ml.pipeline import ingest_step

        return ingest_step(_config())

    @task
    def select_artists(_ingested: dict) -> dict:
        from painting_ml.pipeline import select_artists_step

        return select_artists_step(_config())

    @task
    def split(selection: dict) -> int:
        from painting_ml.pipeline import split_step

        return split_step(_config(), selection)

    @task
    def augment(version_id: int) -> int:
        from painting_ml.pipeline import augment_step

        augment_step(_config(), version_id)
        return version_id

    @task
    def sweep() -> list[str]:
        return list(_config().optimizers)

    @task(queue=GPU_QUEUE, pool=GPU_POOL)
    def train(version_id: int, optimizer: str) -> int:
        from painting_ml.pipeline import train_step

        ctx = get_current_context()
        cfg = _config(optimizer=optimizer)
        # Stable across retries: a retried training finds its run and resumes from its checkpoint.
        return train_step(cfg, version_id, f"{ctx['dag'].dag_id}:{ctx['run_id']}:{cfg.fingerprint()}")

    @task
    def evaluate(training_run: int) -> int:
        from painting_ml.pipeline import evaluate_step

        evaluate_step(training_run)
        return training_run

    @task
    def compare(training_runs: list[int]) -> int:
        from painting_ml.pipeline import compare_step

        return compare_step(list(training_runs))["best_run_id"]

    @task
    def promote(best_run: int) -> int:
        from painting_ml.pipeline import promote_step

        promote_step(_config(), best_run)
        return best_run

    @task
    def mosaics(training_run: int) -> int:
        from painting_ml.pipeline import mosaics_step

        mosaics_step(_config(), training_run)
        return training_run

    @task
    def report(training_run: int) -> str:
        from painting_ml.pipeline import report_step

        return report_step(training_run)

    version = augment(split(select_artists(ingest())))
    runs = evaluate.expand(training_run=train.partial(version_id=version).expand(optimizer=sweep()))
    decided = promote(compare(runs))
    # Every run of the sweep gets its mosaics and report, after the decision so the best one shows it.
    rendered = mosaics.expand(training_run=runs)
    decided >> rendered
    report.expand(training_run=rendered)


painting_retrain()
