"""The production recipe cannot rot: the scheduled run's default config, read from the parsed DAG,
trains one step per phase on CPU at 224 px from a local weights file (made here from a randomly
initialised ResNet50 without its top, standing in for the Keras ImageNet file)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import psycopg
import pytest

from painting_ml import pipeline
from painting_ml.core.config import RunConfig
from painting_ml.learn.training import train

pytestmark = pytest.mark.train

REPO = Path(__file__).resolve().parent.parent


class OneStep(keras.callbacks.Callback):
    """Stops each phase after its first batch; keeps the stem's kernel to check what was loaded."""

    def __init__(self):
        super().__init__()
        self.steps, self.stem = 0, None

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.model.stop_training = True

    def on_train_end(self, logs=None):
        backbone = self.model.get_layer("backbone")
        self.stem = keras.ops.convert_to_numpy(backbone.get_layer("conv1_conv").kernel)
        # Phase 2 trains stage 5 on top of pretrained weights: its BN layers must stay in inference mode.
        bn = backbone.get_layer("conv5_block3_3_bn")
        self.stage5_bn = (bn.trainable, keras.ops.convert_to_numpy(bn.moving_mean),
                          keras.ops.convert_to_numpy(backbone.get_layer("conv5_block3_3_conv").kernel))


def scheduled_defaults(weights: Path, tmp_path: Path) -> dict:
    """The painting_retrain trigger form's defaults, as a deployment with this weights file parses it."""
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               PAINTING_WEIGHTS=str(weights), PAINTING_DB_URL="postgresql://nobody@127.0.0.1:1/none")
    env.pop("PAINTING_RUN_DEFAULTS", None)
    code = ("import json\nfrom airflow.dag_processing.dagbag import DagBag\n"
            f"d = DagBag(dag_folder={str(REPO / 'dags')!r}).dags['painting_retrain']\n"
            "print(json.dumps({k: d.params[k] for k in d.params}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_default_recipe_trains_at_224_px_from_a_weights_file(clean_db, tmp_path):
    from painting_ml.data.synth import generate

    weights = tmp_path / "weights" / "resnet50_notop.weights.h5"
    weights.parent.mkdir()
    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(224, 224, 3), pooling="avg")
    source.save_weights(weights)
    source_stem = keras.ops.convert_to_numpy(source.get_layer("conv1_conv").kernel)
    source_bn = keras.ops.convert_to_numpy(source.get_layer("conv5_block3_3_bn").moving_mean)

    defaults = scheduled_defaults(weights, tmp_path)
    data = tmp_path / "data"
    generate(data, artists=2, per_artist=6, size=32, seed=1, test_only_artists=0, broken=0)
    # Only what depends on this tiny set changes; the recipe (model, phases, optimizer) is as scheduled.
    cfg = RunConfig.from_params({**defaults, "data_dir": str(data), "n_artists": 2, "wandb": False})
    assert (cfg.image_size, cfg.backbone, cfg.fine_tune, cfg.weights) == (224, "resnet50", "two_phase", str(weights))
    assert (cfg.gradient_accumulation_steps, cfg.optimizers, cfg.epochs, cfg.head_epochs) == (4, ("adam",), 30, 5)

    pipeline.ingest_step(cfg)
    version = pipeline.split_step(cfg, pipeline.select_artists_step(cfg))
    pipeline.augment_step(cfg, version)
    step = OneStep()
    run_id = train(cfg, version, "test:recipe", callbacks=[step])

    assert step.steps == 2  # one batch of phase 1 (head), one of phase 2 (last two stages)
    # The stem is frozen in both phases: it still holds exactly what the weights file held.
    np.testing.assert_array_equal(step.stem, source_stem)
    # Phase 2's step ran stage 5 in training mode: a trainable BN would have moved its moving
    # statistics in the forward pass (optimizer or not); a frozen one keeps the pretrained ones.
    bn_trainable, bn_mean, _ = step.stage5_bn
    assert bn_trainable is False
    np.testing.assert_array_equal(bn_mean, source_bn)
    with psycopg.connect(clean_db) as conn:
        status, config = conn.execute("SELECT status, config FROM runs WHERE id = %s", (run_id,)).fetchone()
        epochs = conn.execute("SELECT epoch, phase, learning_rate FROM epochs WHERE run_id = %s ORDER BY epoch",
                              (run_id,)).fetchall()
    assert status == "trained" and config["image_size"] == 224 and config["weights"] == str(weights)
    assert [(e, p) for e, p, _ in epochs] == [(1, 1), (6, 2)]  # phase 2 starts after head_epochs=5
    assert epochs[1][2] == pytest.approx(cfg.learning_rate * cfg.fine_tune_lr_factor)
