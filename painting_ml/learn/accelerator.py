"""Accelerator set-up for training, backend-agnostic: bf16 mixed precision and XLA compilation when
a GPU is present (XLA not for TensorFlow over several devices), data parallelism when there are
several devices.

TensorFlow is the default backend; the same model code runs on JAX (``KERAS_BACKEND=jax``), which
is how GPU checks run on machines without TensorFlow. Data parallelism is ``MirroredStrategy`` on
TensorFlow and ``keras.distribution.DataParallel`` on JAX: each step's global batch is split across
the devices, the gradients averaged, the weights kept identical on every device.

A machine without GPUs can train data-parallel on virtual CPU devices (``PAINTING_CPU_REPLICAS=N``
or ``plan(cpu_replicas=N)``): TensorFlow logical CPU devices, JAX host-platform devices. That is
for tests and CI, which exercise the distributed code path on CPUs; it brings no speed-up.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import keras

from painting_ml.core.errors import ConfigError

#: Virtual CPU devices to train data-parallel on when there is no GPU (unset: one device).
CPU_REPLICAS_ENV = "PAINTING_CPU_REPLICAS"


@dataclass(frozen=True)
class AcceleratorPlan:
    """How one training uses this machine. ``devices`` are Keras device names (``gpu:0``,
    ``cpu:1``); one replica of the model trains on each."""

    backend: str
    gpus: int
    devices: tuple[str, ...]
    mixed_precision: bool
    jit_compile: bool | str

    @property
    def replicas(self) -> int:
        return len(self.devices)

    @property
    def data_parallel(self) -> bool:
        return self.replicas > 1

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "devices": list(self.devices), "replicas": self.replicas,
                "data_parallel": self.data_parallel}


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


def cpu_replicas_setting() -> int:
    """``PAINTING_CPU_REPLICAS`` as an int (1 when unset or empty)."""
    raw = os.environ.get(CPU_REPLICAS_ENV, "").strip()
    try:
        n = int(raw) if raw else 1
    except ValueError:
        raise ConfigError(f"{CPU_REPLICAS_ENV}={raw!r} is not a whole number of CPU devices") from None
    if n < 1:
        raise ConfigError(f"{CPU_REPLICAS_ENV}={n}: give 1 or more CPU devices")
    return n


def split_cpu(n: int) -> None:
    """Make the host CPU appear as ``n`` devices to the active backend.

    Must run before the backend starts its runtime (TensorFlow: before its first op or dataset;
    JAX: before its first ``jax.devices()``); afterwards only the same ``n`` is accepted.

    Raises:
        ConfigError: the backend started already with another device count, or cannot split.
    """
    backend = keras.backend.backend()
    too_late = (f"cannot split the CPU into {n} devices: the {backend} runtime started already with "
                "{have}; set {env} (or call plan(cpu_replicas=...)) before anything runs on the backend")
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError:
            have = len(tf.config.list_logical_devices("CPU"))
            if have != n:
                raise ConfigError(too_late.format(have=have, env=CPU_REPLICAS_ENV)) from None
    elif backend == "jax":
        import jax

        try:
            jax.config.update("jax_num_cpu_devices", n)
        except RuntimeError:
            have = len(jax.devices("cpu"))
            if have != n:
                raise ConfigError(too_late.format(have=have, env=CPU_REPLICAS_ENV)) from None
    elif n > 1:
        raise ConfigError(f"{CPU_REPLICAS_ENV}={n}: virtual CPU devices need the tensorflow or jax backend, "
                          f"not {backend}")


def list_devices() -> list[str]:
    """The devices the active backend trains on, as Keras names them: its GPUs, else its CPUs."""
    gpus = keras.distribution.list_devices("gpu") if count_gpus() else []
    return [d.lower() for d in (gpus or keras.distribution.list_devices("cpu"))]


def plan(mixed_precision: str = "auto", gpus: int | None = None, cpu_replicas: int | None = None) -> AcceleratorPlan:
    """Decide how to train on this machine: one replica per device the backend sees.

    Args:
        mixed_precision: ``auto`` (bf16 on a GPU, float32 on CPU), ``on`` or ``off``.
        gpus: override the detected GPU count (tests); the devices are then named, not detected.
        cpu_replicas: without GPUs, split the CPU into this many devices and train data-parallel on
            them (default ``PAINTING_CPU_REPLICAS``, else 1). Call before the backend runs anything.
    """
    n_gpus = count_gpus() if gpus is None else gpus
    if n_gpus:
        devices = list_devices() if gpus is None else [f"gpu:{i}" for i in range(n_gpus)]
    else:
        n_cpu = cpu_replicas_setting() if cpu_replicas is None else cpu_replicas
        if n_cpu > 1:
            split_cpu(n_cpu)
        devices = list_devices() if gpus is None else [f"cpu:{i}" for i in range(n_cpu)]
    backend = keras.backend.backend()
    mp = n_gpus > 0 if mixed_precision == "auto" else mixed_precision == "on"
    # XLA on GPUs, except for a TensorFlow step over several devices, which XLA cannot compile
    # (Keras' "auto" leaves XLA off under tf.distribute).
    xla = n_gpus > 0 and not (backend == "tensorflow" and len(devices) > 1)
    return AcceleratorPlan(backend=backend, gpus=n_gpus, devices=tuple(devices), mixed_precision=mp,
                           jit_compile=True if xla else "auto")


def apply(p: AcceleratorPlan) -> AbstractContextManager[Any]:
    """Set the global dtype policy; return the context to build, compile and fit the model in (the
    data-parallel distribution when the plan has several devices)."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if p.mixed_precision else "float32")
    if not p.data_parallel:
        return contextlib.nullcontext()
    if p.backend == "jax":
        return _jax_data_parallel(p.devices)
    if p.backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy([f"/{d}" for d in p.devices]).scope()
    raise ConfigError(f"data parallelism over {p.replicas} devices needs the tensorflow or jax backend, "
                      f"not {p.backend}")


@contextlib.contextmanager
def _jax_data_parallel(devices: tuple[str, ...]) -> Iterator[None]:
    """``keras.distribution.DataParallel`` over ``devices``, except that a batch the devices cannot
    split evenly (an epoch's last, a small validation set) is computed whole on every device: the
    same results as one device, where Keras would fail to shard it. Keras picks the batch sharding
    from an epoch's first batch and reuses it, so the choice is made as each batch is placed."""
    import jax
    from keras.src.backend.jax import distribution_lib

    place = distribution_lib.distribute_data_input

    def place_whole_when_uneven(batch: Any, layout: Any, batch_dim_name: str) -> Any:
        sharding = layout.backend_layout if isinstance(layout, keras.distribution.TensorLayout) else layout
        if batch.shape and batch.shape[0] % sharding.mesh.shape[batch_dim_name]:
            sharding = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
        return place(batch, sharding, batch_dim_name)

    distribution_lib.distribute_data_input = place_whole_when_uneven
    try:
        with keras.distribution.DataParallel(devices=list(devices)).scope():
            yield
    finally:
        distribution_lib.distribute_data_input = place


def prepare_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """Make ``optimizer`` work under the active data-parallel distribution; returns it.

    Keras' gradient accumulation updates the weights inside a ``cond``; under a TensorFlow
    ``MirroredStrategy`` that ``cond`` holds the gradients' all-reduce and the mirrored-variable
    updates, which TensorFlow refuses ("merge_call called while defining a new graph"). Here the
    gradients are all-reduced every step, in the replica context, and the accumulate-or-apply
    choice is made once for all replicas in the cross-replica context, where a ``cond`` may update
    mirrored variables. Gradients, accumulators and weights stay identical on every replica, as
    on one device. JAX (``DataParallel``) computes on global arrays and needs nothing.
    """
    if keras.backend.backend() != "tensorflow" or not optimizer.gradient_accumulation_steps:
        return optimizer
    import tensorflow as tf

    if tf.distribute.get_strategy().num_replicas_in_sync < 2:
        return optimizer
    if optimizer.use_ema:
        raise ConfigError("gradient accumulation with EMA is not supported under data parallelism")
    plain = optimizer._backend_apply_gradients

    def apply_gradients(grads: list[Any], trainable_variables: list[Any]) -> None:
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync < 2:
            plain(grads, trainable_variables)
            return
        steps = optimizer.gradient_accumulation_steps
        # The loss is scaled by 1 / replicas, so the sum over replicas is the global batch's mean.
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, list(grads))
        accumulators = [optimizer._accumulated_gradients[optimizer._get_variable_index(v)]
                        for v in trainable_variables]
        update = optimizer._clip_gradients([(g + a) / steps for g, a in zip(grads, accumulators, strict=True)])
        variables = [v.value if isinstance(v, keras.Variable) else v for v in trainable_variables]
        accumulators = [a.value for a in accumulators]

        def accumulate_or_apply(strategy: tf.distribute.Strategy, grads: list[Any], update: list[Any]) -> None:
            def apply() -> None:
                optimizer._apply_weight_decay(trainable_variables)
                optimizer._distributed_tf_update_step(strategy, list(zip(update, variables, strict=True)),
                                                      optimizer.learning_rate)
                for acc in accumulators:
                    strategy.extended.update(acc, lambda a: a.assign(tf.zeros_like(a)), group=False)

            def accumulate() -> None:
                for acc, g in zip(accumulators, grads, strict=True):
                    strategy.extended.update(acc, lambda a, g: a.assign_add(g), args=(g,), group=False)

            tf.cond((optimizer._iterations + 1) % steps == 0, apply, accumulate)

        ctx.merge_call(accumulate_or_apply, args=(grads, update))

    optimizer._backend_apply_gradients = apply_gradients
    return optimizer


def replica_share(batch: Any) -> tuple[Any, Any, int]:
    """This replica's place in the global batch: ``(offset of its first example, global batch size,
    replicas)``, for code inside the model's step.

    Under a TensorFlow ``MirroredStrategy`` each replica computes on its own slice of the global
    batch, and the last batch of an epoch can split unevenly (5 examples as 3 + 2). Elsewhere (one
    device, or JAX's ``DataParallel``, which computes on global arrays) it is ``(0, batch, 1)``.
    """
    if keras.backend.backend() != "tensorflow":
        return 0, batch, 1
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync < 2:
        return 0, batch, 1
    sizes = ctx.all_gather(tf.reshape(tf.cast(batch, tf.int32), [1]), axis=0)
    offset = tf.reduce_sum(sizes[: ctx.replica_id_in_sync_group])
    return offset, tf.reduce_sum(sizes), ctx.num_replicas_in_sync


def prepare_model(model: keras.Model) -> keras.Model:
    """Make ``model``, built in a TensorFlow ``MirroredStrategy`` scope, train as on one device;
    returns it. Elsewhere it is returned unchanged (JAX's ``DataParallel`` computes on global arrays).

    - BatchNormalization layers that train use the global batch's statistics (``synchronized``),
      not each replica's slice's; their saved config still says ``synchronized=False``, so the
      saved model loads on any backend and device count.
    - Under a strategy Keras builds the model's metrics from the dataset's first batch, averaged
      over the replicas: that fails when the batch splits unevenly (a validation set smaller than
      a batch), and it uses up one pass of a reshuffling dataset, so the first epoch sees another
      order than on one device. Here it builds from the dataset's element spec, reading nothing.
    """
    if keras.backend.backend() != "tensorflow":
        return model
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync < 2:
        return model
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            layer.get_config = _unsynchronized_config(layer)

    def symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:  # the shapes and dtypes are all the build needs
            data_batch = iterator.data_adapter.get_tf_dataset().element_spec
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = symbolic_build
    return model


def _unsynchronized_config(layer: keras.layers.BatchNormalization) -> Any:
    config = type(layer).get_config

    def get_config() -> dict[str, Any]:
        return {**config(layer), "synchronized": False}

    return get_config
