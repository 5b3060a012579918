"""Model factory in backend-agnostic Keras 3: a ResNet backbone (50, 101 or a basic-block 18),
a head (pooling, dense, dropout, L2) and one softmax output per target (artist, style, genre),
plus the fine-tuning modes, the masked loss and metric, and the optimizers.

Importing this module imports Keras (and its backend); DAG files never import it at parse time.
"""

from __future__ import annotations

import re

import keras
from keras import ops

from painting_ml.core.config import RunConfig
from painting_ml.core.errors import ConfigError
from painting_ml.core.settings import get_settings
from painting_ml.core.weights import check_weights
from painting_ml.learn import online_augment  # noqa: F401  (registers RandomAffine, so saved models load anywhere)
from painting_ml.learn.accelerator import prepare_model, prepare_optimizer, replica_share

_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
EMBEDDING_LAYER = "embedding"
BACKBONE_LAYER = "backbone"
N_STAGES = 5  # conv1 (stem) + conv2..conv5, the ResNet stage naming Keras uses


@keras.saving.register_keras_serializable(package="painting_ml")
class CaffePreprocess(keras.layers.Layer):
    """ImageNet "caffe" preprocessing (RGB->BGR, mean subtraction) inside the model, so a saved
    model takes raw 0..255 RGB pixels and ImageNet weights see what they were trained on."""

    def call(self, x):
        x = ops.flip(ops.cast(x, self.compute_dtype), axis=-1)
        return x - ops.convert_to_tensor(_IMAGENET_BGR_MEAN, dtype=x.dtype)


@keras.saving.register_keras_serializable(package="painting_ml")
class GlobalBatchDropout(keras.layers.Dropout):
    """Keras' Dropout with masks that do not depend on how the batch is split across replicas.

    Under a TensorFlow ``MirroredStrategy`` every replica draws from the same seed, so each
    replica's slice would get the masks of the global batch's first rows (and the same masks as
    the other replicas). Here each replica draws the global batch's masks and keeps its own rows:
    the masks one device would use. On one device, or on JAX, it is Keras' Dropout.
    """

    def call(self, inputs, training=False):
        if not training or not self.rate or self.noise_shape is not None:
            return super().call(inputs, training=training)
        batch = ops.shape(inputs)[0]
        offset, total, replicas = replica_share(batch)
        if replicas == 1:
            return super().call(inputs, training=training)
        ones = ops.ones((total, *inputs.shape[1:]), dtype=inputs.dtype)
        masks = keras.random.dropout(ones, self.rate, seed=self.seed_generator)
        start = (offset,) + (0,) * (len(inputs.shape) - 1)
        return inputs * ops.slice(masks, start, (batch, *inputs.shape[1:]))


# --- ResNet18 ---------------------------------------------------------------------------------
def _basic_block(x, filters: int, stride: int, name: str, bn_axis: int = 3):
    """Two 3x3 convolutions with a shortcut (He et al. 2016, table 1, "basic block").

    The shortcut is a strided 1x1 projection when the shape changes — the piece the seed's copied
    ResNet18 got wrong (its blocks added mismatched tensors through a broadcast), which is why it
    stayed at chance.
    """
    shortcut = x
    if stride != 1 or x.shape[bn_axis] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_0_conv")(x)
        shortcut = keras.layers.BatchNormalization(axis=bn_axis, epsilon=1.001e-5, name=f"{name}_0_bn")(shortcut)
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_1_conv")(x)
    x = keras.layers.BatchNormalization(axis=bn_axis, epsilon=1.001e-5, name=f"{name}_1_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(x)
    x = keras.layers.BatchNormalization(axis=bn_axis, epsilon=1.001e-5, name=f"{name}_2_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def resnet18(input_shape: tuple[int, int, int], pooling: str = "avg") -> keras.Model:
    """ResNet18 without its top: 7x7/2 stem, max-pool, four stages of two basic blocks
    (64, 128, 256, 512 filters; strides 1, 2, 2, 2), global pooling. Layer names follow Keras'
    ResNet50 (``conv1_*``, ``conv{2..5}_block{1,2}_*``) so the fine-tuning modes treat both alike."""
    inputs = keras.Input(input_shape)
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=1.001e-5, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=2):
        x = _basic_block(x, filters, stride, f"conv{stage}_block1")
        x = _basic_block(x, filters, 1, f"conv{stage}_block2")
    pool = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
    return keras.Model(inputs, pool(name=f"{pooling}_pool")(x), name="resnet18")


def create_backbone(cfg: RunConfig) -> keras.Model:
    """The backbone for ``cfg.backbone`` with ``cfg.weights`` loaded (none, imagenet or a file)."""
    shape = (cfg.image_size, cfg.image_size, 3)
    weights = cfg.weights
    check_weights(weights, cfg.backbone)
    if cfg.backbone == "resnet18":
        if weights == "imagenet":
            raise ConfigError("Keras ships no ImageNet weights for resnet18; pass a local weights file or "
                              "use backbone resnet50/resnet101 with weights=imagenet")
        backbone = resnet18(shape, cfg.pooling)
    else:
        factory = {"resnet50": keras.applications.ResNet50, "resnet101": keras.applications.ResNet101}[cfg.backbone]
        backbone = factory(include_top=False, weights="imagenet" if weights == "imagenet" else None,
                           input_shape=shape, pooling=cfg.pooling)
    if weights not in (None, "imagenet"):
        _load_backbone_weights(backbone, weights, cfg.backbone)
    # Keras' default momentum (0.99) leaves the moving statistics unsettled after the ~100 steps
    # of a small run, so inference-mode accuracy stays at chance; 0.9 settles them.
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = cfg.bn_momentum
    return backbone


def _load_backbone_weights(backbone: keras.Model, path: str, name: str) -> None:
    """Load a weights file strictly: Keras only warns ("Skipping ...") when parts of a file do
    not match and keeps fresh weights there; here any such mismatch is an error."""
    import warnings

    fix = "use the weights of the same architecture saved without its top (include_top=False)"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            backbone.load_weights(path)
    except (ValueError, KeyError, OSError) as exc:
        raise ConfigError(f"weights file {path!r} does not fit backbone {name}: {exc}; {fix}") from exc
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message) or "mismatch" in str(w.message)]
    if skipped:
        raise ConfigError(f"weights file {path!r} does not fit backbone {name} ({len(skipped)} parts did not "
                          f"match, e.g. {skipped[0][:160]}); {fix}")


# --- fine-tuning ------------------------------------------------------------------------------
def stage_of(layer_name: str) -> int:
    """ResNet stage of a backbone layer: 1 for the stem (conv1/pool1), 2..5 for conv2..conv5,
    5 for the final pooling."""
    m = re.match(r"conv(\d)_", layer_name)
    if m:
        return int(m.group(1))
    if layer_name.startswith(("pool1", "input")):
        return 1
    return N_STAGES  # post-stage layers (global pooling)


def set_trainable(model: keras.Model, mode: str, stages: int = 1, freeze_bn: bool = False) -> None:
    """Apply a fine-tuning mode to ``model``'s backbone.

    ``all``: every layer trains. ``frozen``: the backbone is frozen (head only). ``last_k``: only
    the last ``stages`` of the five stages train. Frozen BatchNormalization layers run in inference
    mode (Keras 3 uses batch statistics only when a BN layer is both training and trainable), so
    their moving statistics stay as loaded. With ``freeze_bn`` (pretrained weights) every
    BatchNormalization layer stays frozen even in an unfrozen stage — the Keras transfer-learning
    guide's advice: batch statistics of a small fine-tuning set would wreck the pretrained ones.
    Re-compile the model after changing this.
    """
    backbone = model.get_layer(BACKBONE_LAYER)
    if mode == "all":
        backbone.trainable = True
        for layer in backbone.layers:
            layer.trainable = True
    elif mode == "frozen":
        backbone.trainable = False
    elif mode == "last_k":
        backbone.trainable = True
        first = N_STAGES - stages + 1
        for layer in backbone.layers:
            layer.trainable = stage_of(layer.name) >= first
    else:
        raise ConfigError(f"unknown fine-tuning mode {mode!r}; choose one of all, frozen, last_k")
    if freeze_bn:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


def pretrained(cfg: RunConfig) -> bool:
    """Whether the backbone starts from trained weights (ImageNet or a weights file)."""
    return cfg.weights is not None


def initial_trainable_mode(cfg: RunConfig) -> tuple[str, int]:
    """The mode the first (or only) training phase uses."""
    if cfg.fine_tune in ("frozen", "two_phase"):
        return "frozen", 0
    return cfg.fine_tune, cfg.fine_tune_stages


# --- model ------------------------------------------------------------------------------------
def create_model(cfg: RunConfig, n_classes: int | dict[str, int]) -> keras.Model:
    """Build the (uncompiled) classifier for ``cfg``: one softmax output per target.

    ``n_classes`` is the artist count, or ``{target: count}`` for multi-task. The model takes raw
    uint8/float 0..255 RGB images; outputs are a dict keyed by target name. The layer named
    ``embedding`` holds the features used for same-artist verification.
    """
    classes = n_classes if isinstance(n_classes, dict) else {"artist": n_classes}
    missing = [t for t in cfg.targets if t not in classes]
    if missing:
        raise ConfigError(f"no class count for target(s) {missing}")
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    x = inputs
    if cfg.online_augment:
        from painting_ml.learn.online_augment import RandomAffine

        x = RandomAffine(cfg.aug_rotation, cfg.aug_shift, cfg.aug_shear, cfg.aug_zoom, cfg.aug_hflip,
                         seed=cfg.seed, name="online_augment")(x)
    x = CaffePreprocess(name="caffe_preprocess")(x)
    backbone = create_backbone(cfg)
    backbone.name = BACKBONE_LAYER
    x = backbone(x)
    reg = keras.regularizers.L2(cfg.l2) if cfg.l2 else None
    if cfg.head_units:
        x = keras.layers.Dense(cfg.head_units, activation="relu", kernel_regularizer=reg, name="head_dense")(x)
    x = keras.layers.Identity(name=EMBEDDING_LAYER)(x)
    x = GlobalBatchDropout(cfg.dropout, name="head_dropout")(x)
    # float32 outputs keep the softmax and loss stable under a mixed_bfloat16 policy.
    outputs = {t: keras.layers.Dense(classes[t], activation="softmax", name=t, dtype="float32",
                                     kernel_regularizer=reg)(x) for t in cfg.targets}
    model = keras.Model(inputs, outputs, name=f"{cfg.backbone}_{'_'.join(cfg.targets)}")
    mode, stages = initial_trainable_mode(cfg)
    set_trainable(model, mode, stages, freeze_bn=pretrained(cfg))
    return prepare_model(model)


@keras.saving.register_keras_serializable(package="painting_ml")
class MaskedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels with label smoothing; label -1 (unknown style/genre)
    contributes nothing. Backend-agnostic (keras.ops)."""

    def __init__(self, n_classes: int, label_smoothing: float = 0.0, name="masked_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_classes, self.label_smoothing = int(n_classes), float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        mask = ops.cast(y_true >= 0, y_pred.dtype)
        onehot = ops.one_hot(ops.maximum(y_true, 0), self.n_classes, dtype=y_pred.dtype)
        if self.label_smoothing:
            onehot = onehot * (1.0 - self.label_smoothing) + self.label_smoothing / self.n_classes
        logp = ops.log(ops.clip(y_pred, 1e-7, 1.0))
        losses = -ops.sum(onehot * logp, axis=-1) * mask
        _, total, replicas = replica_share(ops.shape(y_true)[0])
        if replicas == 1:
            return losses
        # Keras averages each replica's mean, which over-weights the smaller slice of an unevenly
        # split batch. Weight the gradient so it is the global batch's mean, as on one device,
        # and leave the value (this slice's mean, which Keras weights by its size) unchanged.
        weight = ops.cast(ops.shape(y_true)[0] * replicas, losses.dtype) / ops.cast(total, losses.dtype)
        return weight * losses + ops.stop_gradient((1.0 - weight) * losses)

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes, "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="painting_ml")
class MaskedAccuracy(keras.metrics.Metric):
    """Top-1 accuracy over the samples whose label is known (label >= 0)."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        known = ops.cast(y_true >= 0, "float32")
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32") * known
        self.correct.assign_add(ops.sum(hit))
        self.count.assign_add(ops.sum(known))

    def result(self):
        return ops.divide_no_nan(self.correct, self.count)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)


def compile_model(model: keras.Model, cfg: RunConfig, learning_rate: float | None = None,
                  jit_compile: bool | str = "auto") -> None:
    """Compile with one masked, label-smoothed cross-entropy and one accuracy per target (op by op,
    not traced, when the ``PAINTING_RUN_EAGERLY`` setting asks)."""
    n = {t: int(model.get_layer(t).units) for t in cfg.targets}
    eager = get_settings().run_eagerly
    model.compile(
        optimizer=create_optimizer(cfg, learning_rate),
        loss={t: MaskedSparseCrossentropy(n[t], cfg.label_smoothing) for t in cfg.targets},
        loss_weights={t: cfg.loss_weight(t) for t in cfg.targets},
        metrics={t: [MaskedAccuracy(name="accuracy")] for t in cfg.targets},
        jit_compile=False if eager else jit_compile,
        run_eagerly=eager,
    )


def create_optimizer(cfg: RunConfig, learning_rate: float | None = None) -> keras.optimizers.Optimizer:
    """Adam, AdamW (``weight_decay``), RMSprop or SGD (``momentum``, ``nesterov``).

    ``gradient_accumulation_steps`` > 1 uses Keras' own accumulation: gradients are summed over N
    batches and the weights move once every N steps. Call it in the distribution scope the model
    trains in (see :func:`painting_ml.learn.accelerator.prepare_optimizer`).
    """
    lr = cfg.learning_rate if learning_rate is None else learning_rate
    common = {"learning_rate": lr}
    if cfg.gradient_accumulation_steps > 1:
        common["gradient_accumulation_steps"] = cfg.gradient_accumulation_steps
    name = cfg.optimizer
    if name == "adam":
        optimizer = keras.optimizers.Adam(**common)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(weight_decay=cfg.weight_decay, **common)
    elif name == "rmsprop":
        optimizer = keras.optimizers.RMSprop(**common)
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(momentum=cfg.momentum, nesterov=cfg.nesterov, **common)
    else:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of adam, adamw, rmsprop, sgd")
    return prepare_optimizer(optimizer)
