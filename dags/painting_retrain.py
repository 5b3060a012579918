"""
### painting_retrain

Retrains the painter classifier: **ingest** the Painter-by-Numbers CSV and images into Postgres →
**select_artists** (top N by usable images, equalised to the smallest) → **split** (stratified,
seeded, stored as a dataset version) → **augment** (offline flips of the train split) → **train**
(Keras ResNet50/101/18, single- or multi-task, on queue `gpu`) → **evaluate** (per-class
precision/recall/F1/support/accuracy, confusion matrix, top-3, open-set AUROC on unseen artists,
same-artist verification AUC, all in Postgres) → **mosaics** (per artist: its real test paintings, and the paintings predicted as it) →
**report** (`report.html` with metrics tables, plots and mosaics).

Trigger it by hand from the UI to change any of the Params below. All logic lives in `painting_ml`.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from painting_ml.settings import get_settings

DEFAULT_DATA_DIR = str(get_settings().data_dir / "demo")


def _config():
    """The run config from this run's Params (validated; unknown keys refused)."""
    from painting_ml.config import RunConfig

    return RunConfig.from_params(dict(get_current_context()["params"]))


@dag(
    dag_id="painting_retrain",
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    tags=["painting_ml"],
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
        "augment": Param(["hflip"], type="array", items={"type": "string", "pattern": "^(hflip|vflip|hvflip|rot[0-9]{1,3})$"},
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
        "optimizer": Param("adam", type="string", enum=["adam", "adamw", "rmsprop", "sgd"], title="Optimizer",
                           description="Keras optimizer used for training (sgd: momentum 0.9)."),
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

    @task(queue="gpu")
    def train(version_id: int) -> int:
        from painting_ml.pipeline import train_step

        ctx = get_current_context()
        cfg = _config()
        return train_step(cfg, version_id, f"{ctx['dag'].dag_id}:{ctx['run_id']}:{cfg.fingerprint()}")

    @task
    def evaluate(training_run: int) -> int:
        from painting_ml.pipeline import evaluate_step

        evaluate_step(training_run)
        return training_run

    @task
    def mosaics(training_run: int) -> int:
        from painting_ml.pipeline import mosaics_step

        mosaics_step(_config(), training_run)
        return training_run

    @task
    def report(training_run: int) -> str:
        from painting_ml.pipeline import report_step

        return report_step(training_run)

    report(mosaics(evaluate(train(augment(split(select_artists(ingest())))))))


painting_retrain()
