import pytest

import keras

from painting_ml.learn import accelerator  # noqa: E402


def test_cpu_plan_is_float32_without_forced_xla():
    p = accelerator.plan(gpus=0)
    assert (p.mixed_precision, p.jit_compile, p.data_parallel) == (False, "auto", False)


def test_gpu_plan_uses_bf16_xla_and_data_parallel_when_several():
    one, many = accelerator.plan(gpus=1), accelerator.plan(gpus=4)
    assert one.mixed_precision and one.jit_compile is True and not one.data_parallel
    assert many.data_parallel
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
    p = accelerator.plan()
    assert (p.gpus, p.mixed_precision, p.jit_compile, p.data_parallel) == (2, True, True, True)
    monkeypatch.setattr(accelerator, "count_gpus", lambda: 0)
    assert accelerator.plan().mixed_precision is False

