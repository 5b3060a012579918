"""The accelerator plan: precision, XLA and the replica count from the devices. Training on several
devices for real is tests/test_data_parallel.py (child processes: the CPU must be split before
the backend starts)."""

import json

import keras
import numpy as np
import pytest

from painting_ml.core.errors import ConfigError
from painting_ml.learn import accelerator  # noqa: E402

pytestmark = pytest.mark.unit


def test_cpu_plan_is_float32_without_forced_xla():
    p = accelerator.plan(gpus=0)
    assert (p.mixed_precision, p.jit_compile, p.data_parallel) == (False, "auto", False)
    assert (p.devices, p.replicas) == (("cpu:0",), 1)


def test_gpu_plan_uses_bf16_xla_and_data_parallel_when_several():
    one, many = accelerator.plan(gpus=1), accelerator.plan(gpus=4)
    assert one.mixed_precision and one.jit_compile is True and not one.data_parallel
    assert many.data_parallel and many.devices == ("gpu:0", "gpu:1", "gpu:2", "gpu:3")
    # XLA cannot compile a TensorFlow step spread over several devices; on JAX it can.
    assert many.jit_compile == ("auto" if keras.backend.backend() == "tensorflow" else True)
    assert accelerator.plan("off", gpus=1).mixed_precision is False


def test_apply_sets_the_global_policy():
    try:
        accelerator.apply(accelerator.plan("on", gpus=1))
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        accelerator.apply(accelerator.plan(gpus=0))
    assert keras.mixed_precision.global_policy().name == "float32"


def test_plan_without_override_uses_detected_gpus(monkeypatch):
    monkeypatch.setattr(accelerator, "count_gpus", lambda: 2)
    monkeypatch.setattr(accelerator, "list_devices", lambda: ["gpu:0", "gpu:1"])
    p = accelerator.plan()
    assert (p.gpus, p.replicas, p.mixed_precision, p.data_parallel) == (2, 2, True, True)
    monkeypatch.setattr(accelerator, "count_gpus", lambda: 0)
    monkeypatch.setattr(accelerator, "list_devices", lambda: ["cpu:0"])
    assert accelerator.plan().mixed_precision is False


def test_the_replica_count_comes_from_the_devices(monkeypatch):
    """Virtual CPU devices (already split, say by XLA_FLAGS on JAX) make a data-parallel plan in
    float32 without forced XLA."""
    monkeypatch.setattr(accelerator, "count_gpus", lambda: 0)
    monkeypatch.setattr(accelerator, "list_devices", lambda: ["cpu:0", "cpu:1"])
    p = accelerator.plan()
    assert (p.devices, p.replicas, p.data_parallel, p.mixed_precision, p.jit_compile) == (
        ("cpu:0", "cpu:1"), 2, True, False, "auto")
    assert json.loads(json.dumps(p.to_dict()))["replicas"] == 2  # the training log's line


@pytest.mark.parametrize(("raw", "expected"), [(None, 1), ("", 1), ("1", 1), (" 4 ", 4)])
def test_cpu_replicas_setting(monkeypatch, raw, expected):
    if raw is None:
        monkeypatch.delenv(accelerator.CPU_REPLICAS_ENV, raising=False)
    else:
        monkeypatch.setenv(accelerator.CPU_REPLICAS_ENV, raw)
    assert accelerator.cpu_replicas_setting() == expected


@pytest.mark.parametrize("raw", ["two", "0", "-1"])
def test_cpu_replicas_setting_refuses_nonsense(monkeypatch, raw):
    monkeypatch.setenv(accelerator.CPU_REPLICAS_ENV, raw)
    with pytest.raises(ConfigError, match=accelerator.CPU_REPLICAS_ENV):
        accelerator.cpu_replicas_setting()


def test_splitting_the_cpu_after_the_backend_started_names_the_setting():
    keras.ops.convert_to_numpy(keras.ops.ones(1))  # the backend runs by now
    accelerator.split_cpu(1)  # what it has: fine
    with pytest.raises(ConfigError, match="PAINTING_CPU_REPLICAS.*before anything runs"):
        accelerator.plan(cpu_replicas=3)


def test_data_parallel_needs_tensorflow_or_jax():
    p = accelerator.AcceleratorPlan(backend="torch", gpus=2, devices=("gpu:0", "gpu:1"), mixed_precision=False,
                                    jit_compile="auto")
    with pytest.raises(ConfigError, match="tensorflow or jax"):
        accelerator.apply(p)


def test_one_device_leaves_model_optimizer_and_batch_alone():
    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    assert accelerator.prepare_model(model) is model and "_maybe_symbolic_build" not in vars(model)
    assert model.layers[0].synchronized is False
    opt = keras.optimizers.Adam(gradient_accumulation_steps=2)
    assert accelerator.prepare_optimizer(opt) is opt and "_backend_apply_gradients" not in vars(opt)
    assert accelerator.replica_share(5) == (0, 5, 1)


def test_global_batch_dropout_is_keras_dropout_on_one_device():
    from painting_ml.learn.models import GlobalBatchDropout

    x = np.ones((6, 10), "float32")
    ours, theirs = GlobalBatchDropout(0.4, seed=3), keras.layers.Dropout(0.4, seed=3)
    for _ in range(2):  # the seed streams advance alike
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours(x, training=True)),
                                      keras.ops.convert_to_numpy(theirs(x, training=True)))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours(x, training=False)), x)


def test_online_augmentation_turns_xla_off_on_tensorflow_only():
    """TensorFlow cannot XLA-compile the augmentation's image transform: a plan's
    ``jit_compile=True`` (one GPU) must compile the step without XLA there, not fail."""
    from conftest import tiny_run_config

    from painting_ml.learn.models import compile_model, create_model

    cfg = tiny_run_config("-", online_augment=True)
    model = create_model(cfg, 3)
    compile_model(model, cfg, jit_compile=True)
    assert model.jit_compile is (keras.backend.backend() != "tensorflow")
