"""Data parallelism without GPUs.

The real training (``training.train`` on a dataset version made by the pipeline steps: the recipe's
two phases, gradient accumulation 2, online augmentation, dropout, the artist + style heads) runs
on two virtual CPU devices, and again on one with the same seed:

- TensorFlow: ``PAINTING_CPU_REPLICAS=2`` splits the CPU into two logical devices and the plan trains
  under ``MirroredStrategy``;
- JAX: ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` makes two host devices, which the plan
  finds and trains on under ``keras.distribution.DataParallel``.

Each of the two checks that every training batch was split across both devices, that the epochs'
losses and accuracies match the one-device run, that the saved ``model.keras`` loads in a fresh
one-device process and predicts there what it predicted in the data-parallel process, and that the
two runs' saved models predict alike. A third kills a data-parallel training mid-phase and checks
that the retry restores its checkpoint exactly.

Tolerance: the runs do the same arithmetic in another order (two half-batch sums and an all-reduce
instead of one sum), so they differ by float32 rounding, amplified a little by Adam's first steps:
about 1e-6 relative on a loss. The semantic differences this module guards against (replicas
sharing dropout and augmentation draws, the smaller slice of an uneven batch over-weighted, the
first epoch's shuffle order changed, accumulated gradients applied at the wrong step) move the
losses by 5-20 %. ``RTOL = 1e-3`` sits three orders of magnitude above the noise and well below
those.
Keras' per-target losses (``artist_loss``) are not compared: with an unevenly split batch they
are averages of the replicas' own averages, by Keras' design; the total loss is weighted right.

Every training runs in a child process (this file, run as a script): the CPU must be split into
devices before the backend starts, and this test session started TensorFlow long ago. The JAX test
needs ``jax`` (in the ``dev`` extras, so CI has it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.train

REPO = Path(__file__).resolve().parent.parent
RTOL = 1e-3
COMPARED = ("loss", "val_loss", "artist_accuracy", "style_accuracy", "val_artist_accuracy",
            "val_style_accuracy", "learning_rate")
CRASHED = 3  # a child's exit status when it stops itself, as a dying worker would
CHILD_TIMEOUT = 400  # generous: a busy machine stretches a tiny training's wall time several-fold


# --- the child process ------------------------------------------------------------------------------
def _observe_batches(backend: str, seen: list[Any]) -> None:
    """Record how many examples each device got: per training step ``[per replica]`` on
    TensorFlow; per batch put on the devices ``[global, [per device]]`` on JAX."""
    if backend == "tensorflow":
        import tensorflow as tf

        from painting_ml.learn.online_augment import RandomAffine

        call = RandomAffine.call
        calls: dict[int, int] = {}

        def record(replica, size):
            # The n-th training call on a replica is its share of step n.
            r = int(replica)
            n = calls[r] = calls.get(r, 0) + 1
            while len(seen) < n:
                seen.append([])
            seen[n - 1].append(int(size))

        def observed(self, images, training=None):
            if training:
                ctx = tf.distribute.get_replica_context()
                tf.py_function(record, [ctx.replica_id_in_sync_group, tf.shape(images)[0]], [])
            return call(self, images, training=training)

        RandomAffine.call = observed
    else:
        from keras.src.backend.jax import distribution_lib

        place = distribution_lib.distribute_data_input

        def observed_place(batch, layout, batch_dim_name):
            out = place(batch, layout, batch_dim_name)
            if len(out.shape) == 4:  # the images; labels and weights are placed alike
                shards = sorted(out.addressable_shards, key=lambda s: s.device.id)
                seen.append([out.shape[0], [s.data.shape[0] for s in shards]])
            return out

        distribution_lib.distribute_data_input = observed_place


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import keras
    import numpy as np

    keras.config.disable_traceback_filtering()  # a failing child shows where in Keras it failed
    backend = keras.backend.backend()
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    from painting_ml.core import db
    from painting_ml.core.config import RunConfig
    from painting_ml.core.store import get_store
    from painting_ml.learn import accelerator
    from painting_ml.learn.training import train

    batches: list[Any] = []
    _observe_batches(backend, batches)

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: list[dict[str, float]] = []
            self.replicas: list[int] = []
            self.starts: dict[int, list[float]] = {}  # each epoch's starting state

        def on_train_begin(self, logs=None):
            if backend == "tensorflow":
                self.replicas.append(self.model.distribute_strategy.num_replicas_in_sync)
            else:
                dist = keras.distribution.distribution()
                self.replicas.append(1 if dist is None else int(dist.device_mesh.devices.size))

        def on_epoch_begin(self, epoch, logs=None):
            weights = sum(float(np.abs(w).astype(np.float64).sum()) for w in self.model.get_weights())
            moments = sum(float(np.abs(keras.ops.convert_to_numpy(v)).astype(np.float64).sum())
                          for v in self.model.optimizer.variables)
            self.starts[epoch] = [weights, moments]

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append({k: float(v) for k, v in logs.items()})

    class Crash(keras.callbacks.Callback):
        """Stands in for a worker dying when epoch ``at`` (0-based) begins."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == spec.get("crash_at"):
                Path(spec["out"]).write_text(json.dumps({"starts": rec.starts}))
                raise SystemExit(CRASHED)

    rec = Record()
    run_id = train(RunConfig(**spec["config"]), spec["version"], spec["run_key"], callbacks=[rec, Crash()])
    with db.connect() as conn:
        key = db.fetch_one(conn, db.sql("runs", "get_run"), {"id": run_id}, required=True)["model_path"]
    model_file = get_store().local_path(key)
    # The saved model, loaded and run in this process's distribution scope.
    with accelerator.apply(accelerator.plan()):
        predictions = _predict(keras.models.load_model(model_file, compile=False), images)
    # Models another child saved, loaded here: a process that never held them.
    others = [_predict(keras.models.load_model(m, compile=False), images) for m in spec.get("also_predict", [])]
    return {"backend": backend, "run_id": run_id, "epochs": rec.epochs, "replicas": rec.replicas,
            "batches": batches, "starts": rec.starts, "model": str(model_file), "predictions": predictions,
            "others": others}


def _predict(model, images) -> dict[str, list[list[float]]]:
    return {k: v.tolist() for k, v in model.predict(images, batch_size=len(images), verbose=0).items()}


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    Path(spec["out"]).write_text(json.dumps(child(spec)))
    sys.exit(0)


# --- the tests --------------------------------------------------------------------------------------
def run_child(name: str, spec: dict[str, Any], tmp_path: Path, env: dict[str, str], rc: int = 0) -> dict[str, Any]:
    spec_file, out = tmp_path / f"{name}.spec.json", tmp_path / f"{name}.out.json"
    spec_file.write_text(json.dumps({**spec, "out": str(out)}))
    child_env = {k: v for k, v in os.environ.items() if k not in ("PAINTING_CPU_REPLICAS", "XLA_FLAGS")}
    child_env.update(PYTHONPATH=str(REPO), PAINTING_RUN_EAGERLY="0", **env)  # traced steps, as in production
    proc = subprocess.run([sys.executable, __file__, str(spec_file)], env=child_env, capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT)
    assert proc.returncode == rc, f"{name} exited {proc.returncode}:\n{proc.stderr[-8000:]}"
    return json.loads(out.read_text())


def recipe(data_dir: Path) -> Any:
    """The recipe's shape at toy size: two phases (the head, then the last stage at a tenth of the
    learning rate), gradient accumulation 2, online augmentation, artist + style heads; resnet18 at
    32 px from random weights. The set's 21 training images make batches of 16 and 5: the 5 do
    not split evenly over two devices."""
    from conftest import tiny_run_config

    return tiny_run_config(data_dir, targets=("artist", "style"), fine_tune="two_phase", fine_tune_stages=1,
                           head_epochs=1, epochs=2, gradient_accumulation_steps=2, online_augment=True,
                           batch_size=16, dropout=0.4)


@pytest.fixture(scope="module")
def version(db_url, tiny_data) -> int:
    """A dataset version of the shared tiny set, made in this process (no TensorFlow needed)."""
    import psycopg

    from painting_ml import pipeline

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE paintings, rejects, dataset_versions, runs RESTART IDENTITY CASCADE")
    cfg = recipe(tiny_data)
    pipeline.ingest_step(cfg)
    vid = pipeline.split_step(cfg, pipeline.select_artists_step(cfg))
    pipeline.augment_step(cfg, vid)
    return vid


def train_on_one_and_two(backend: str, two_devices: dict[str, str], tiny_data: Path, version: int,
                         tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the recipe on two devices, then on one; the one-device child also loads and predicts
    with the two-device child's saved model (a process that never held it). Returns both reports."""
    spec = {"config": recipe(tiny_data).to_dict(), "version": version}
    env = {"KERAS_BACKEND": backend}
    two = run_child("two", {**spec, "run_key": f"test:dp:{backend}:2"}, tmp_path, {**env, **two_devices})
    one = run_child("one", {**spec, "run_key": f"test:dp:{backend}:1", "also_predict": [two["model"]]}, tmp_path,
                    env)
    return one, two


def assert_same_training(one: dict[str, Any], two: dict[str, Any]) -> None:
    import numpy as np

    assert one["replicas"] == [1, 1] and two["replicas"] == [2, 2]  # both phases
    assert len(one["epochs"]) == len(two["epochs"]) == 2
    for e1, e2 in zip(one["epochs"], two["epochs"], strict=True):
        for key in COMPARED:
            assert e2[key] == pytest.approx(e1[key], rel=RTOL), (key, e1, e2)
    one_saved, (two_fresh,) = one["predictions"], one["others"]
    for target in ("artist", "style"):
        # The saved model predicts in a fresh one-device process what it predicted where it trained.
        np.testing.assert_allclose(two_fresh[target], two["predictions"][target], atol=1e-5)
        # And like the model the same training saved on one device.
        np.testing.assert_allclose(two_fresh[target], one_saved[target], rtol=RTOL, atol=1e-5)


def test_tensorflow_mirrored_strategy_on_two_cpu_devices(tiny_data, version, tmp_path):
    one, two = train_on_one_and_two("tensorflow", {"PAINTING_CPU_REPLICAS": "2"}, tiny_data, version, tmp_path)
    # Two epochs of two steps: 16 images as 8 + 8, then the last 5 as 3 + 2.
    assert one["batches"] == [[16], [5]] * 2
    assert two["batches"] == [[8, 8], [3, 2]] * 2
    assert_same_training(one, two)
    # Synchronised BatchNormalization is a training-time setting: the saved model loads on any backend.
    with zipfile.ZipFile(two["model"]) as saved:
        config = saved.read("config.json").decode()
    assert '"synchronized": true' not in config and '"synchronized": false' in config


def test_jax_data_parallel_on_two_cpu_devices(tiny_data, version, tmp_path):
    pytest.importorskip("jax")
    one, two = train_on_one_and_two(
        "jax", {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, tiny_data, version, tmp_path)
    # Every batch put on the devices (training, validation, prediction): an even one split in
    # halves (16 as 8 + 8); an uneven one (the epoch's last 5) whole on each device, where Keras
    # alone fails to shard it.
    sizes = [size for size, _ in two["batches"]]
    assert 16 in sizes and 5 in sizes
    for size, shards in two["batches"]:
        assert shards == ([size // 2] * 2 if size % 2 == 0 else [size, size]), two["batches"]
    assert_same_training(one, two)


def test_a_data_parallel_training_resumes_where_it_died(tiny_data, version, db_url, tmp_path):
    """Checkpoints written under MirroredStrategy restore under it: a worker dies as phase 2's
    second epoch begins; the retry (same run key) trains only that epoch, from the weights and the
    optimizer state (moments, gradient accumulators, step) the dead one had."""
    import psycopg

    spec = {"config": {**recipe(tiny_data).to_dict(), "epochs": 3}, "version": version,
            "run_key": "test:dp:resume"}
    env = {"KERAS_BACKEND": "tensorflow", "PAINTING_CPU_REPLICAS": "2"}
    dead = run_child("dead", {**spec, "crash_at": 2}, tmp_path, env, rc=CRASHED)
    retry = run_child("retry", spec, tmp_path, env)
    assert retry["replicas"] == [2] and list(retry["starts"]) == ["2"]  # phase 1 and epoch 2 not rerun
    assert retry["starts"]["2"] == pytest.approx(dead["starts"]["2"], rel=1e-12)
    with psycopg.connect(db_url) as conn:
        status = conn.execute("SELECT status FROM runs WHERE id = %s", (retry["run_id"],)).fetchone()[0]
        rows = conn.execute("SELECT epoch, phase FROM epochs WHERE run_id = %s ORDER BY epoch",
                            (retry["run_id"],)).fetchall()
    assert status == "trained" and rows == [(1, 1), (2, 2), (3, 2)]
