"""Model factory: a ResNet backbone and a classification head, in backend-agnostic Keras 3.

Importing this module imports Keras (and its backend); DAG files never import it at parse time.
"""

from __future__ import annotations

from pathlib import Path

import keras

from painting_ml.config import RunConfig
from painting_ml.exceptions import ConfigError

_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="painting_ml")
class CaffePreprocess(keras.layers.Layer):
    """ImageNet "caffe" preprocessing (RGB->BGR, mean subtraction) inside the model, so a saved
    model takes raw 0..255 RGB pixels and ImageNet weights see what they were trained on."""

    def call(self, x):
        x = keras.ops.flip(keras.ops.cast(x, self.compute_dtype), axis=-1)
        return x - keras.ops.convert_to_tensor(_IMAGENET_BGR_MEAN, dtype=x.dtype)


def create_model(cfg: RunConfig, n_classes: int) -> keras.Model:
    """Build the (uncompiled) classifier for ``cfg``.

    ``weights`` is None (random init) or a local weights file of the backbone without its top
    (``include_top=False``) — the offline path, since nothing can be downloaded here.
    """
    weights = cfg.weights
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"weights file {weights!r} not found; pass a local backbone weights "
                          "file (include_top=False) or leave weights empty")
    shape = (cfg.image_size, cfg.image_size, 3)
    inputs = keras.Input(shape, name="image")
    x = inputs
    if cfg.online_augment:
        from painting_ml.online_augment import RandomAffine

        x = RandomAffine(cfg.aug_rotation, cfg.aug_shift, cfg.aug_shear, cfg.aug_zoom, cfg.aug_hflip,
                         seed=cfg.seed, name="online_augment")(x)
    x = CaffePreprocess(name="caffe_preprocess")(x)
    backbone = keras.applications.ResNet50(include_top=False, weights=weights, input_shape=shape, pooling="avg")
    # Keras' default momentum (0.99) leaves the moving statistics unsettled after the ~100 steps
    # of a small run, so inference-mode accuracy stays at chance; 0.9 settles them.
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = cfg.bn_momentum
    x = backbone(x)
    x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(x)
    # float32 output keeps the softmax and loss stable under a mixed_bfloat16 policy.
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="artist", dtype="float32",
                                 kernel_regularizer=keras.regularizers.L2(cfg.l2))(x)
    return keras.Model(inputs, outputs, name=f"{cfg.backbone}_artist")


def create_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam, RMSprop or SGD (momentum 0.9) with the given learning rate."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    raise ConfigError(f"unknown optimizer {name!r}; choose one of adam, rmsprop, sgd")
