"""Accelerator set-up for training, backend-agnostic: bf16 mixed precision and XLA compilation when
a GPU is present, data parallelism when there are several.

TensorFlow is the default backend; the same model code runs on JAX (``KERAS_BACKEND=jax``), which
is how GPU checks run on machines without TensorFlow.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import keras


@dataclass(frozen=True)
class AcceleratorPlan:
    backend: str
    gpus: int
    mixed_precision: bool
    jit_compile: bool | str
    data_parallel: bool

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def count_gpus() -> int:
    """GPUs visible to the active Keras backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return sum(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.device_count()
    return 0


def plan(mixed_precision: str = "auto", gpus: int | None = None) -> AcceleratorPlan:
    """Decide how to train on this machine.

    Args:
        mixed_precision: ``auto`` (bf16 on a GPU, float32 on CPU), ``on`` or ``off``.
        gpus: override the detected GPU count (tests).
    """
    n = count_gpus() if gpus is None else gpus
    mp = n > 0 if mixed_precision == "auto" else mixed_precision == "on"
    return AcceleratorPlan(backend=keras.backend.backend(), gpus=n, mixed_precision=mp,
                           jit_compile=True if n > 0 else "auto", data_parallel=n > 1)


def apply(p: AcceleratorPlan):
    """Apply the plan globally; return a context manager to build and compile the model under."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if p.mixed_precision else "float32")
    if p.data_parallel and p.backend == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    if p.data_parallel and p.backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    return contextlib.nullcontext()
