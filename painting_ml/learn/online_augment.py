"""Online augmentation as one Keras layer: rotation, shift, shear, zoom and horizontal flip fused
into a single affine resampling per image.

Backend-agnostic (``keras.ops`` only), so it runs inside the model on whatever device trains it,
and is active only in training. Stacking Keras' RandomRotation, RandomTranslation, RandomShear,
RandomZoom and RandomFlip resamples every image four times; composing the five transforms into one
matrix first resamples it once, which is what makes the input path fast enough on CPUs.

Ranges follow the seed project's ImageDataGenerator settings: rotation ±20°, shift ±0.2 of the
side, shear factor ±0.2, zoom 0.8–1.2 per axis, horizontal flip.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from painting_ml.learn.accelerator import replica_share


@keras.saving.register_keras_serializable(package="painting_ml")
class RandomAffine(keras.layers.Layer):
    """Random affine augmentation of a batch of images ``(B, H, W, C)``.

    Args:
        rotation: maximum rotation in degrees (either direction).
        shift: maximum translation as a fraction of width/height.
        shear: maximum shear factor.
        zoom: maximum zoom deviation (scale drawn from ``[1 - zoom, 1 + zoom]`` per axis).
        hflip: flip horizontally with probability 1/2.
        fill_mode: ``nearest`` (the seed's ImageDataGenerator default), ``reflect``, ``wrap`` or
            ``constant``.
        seed: seed of the layer's random stream.
    """

    def __init__(self, rotation: float = 20.0, shift: float = 0.2, shear: float = 0.2, zoom: float = 0.2,
                 hflip: bool = True, fill_mode: str = "nearest", interpolation: str = "bilinear",
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.shift, self.shear, self.zoom = float(rotation), float(shift), float(shear), float(zoom)
        self.hflip, self.fill_mode, self.interpolation, self.seed = bool(hflip), fill_mode, interpolation, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False
        # TensorFlow has no XLA kernel for its image transform op: Keras then compiles the step
        # without XLA (as for its own image layers) instead of failing. JAX compiles it.
        self.supports_jit = keras.backend.backend() != "tensorflow"

    def transform_matrices(self, batch, height: int, width: int):
        """Per-image output->input projective transforms, shape ``(batch, 8)``.

        Under data parallelism each replica draws the parameters of the whole global batch and keeps
        its own slice: the images get the transforms they would get on one device, and no two
        replicas repeat each other's."""
        offset, total, replicas = replica_share(batch)

        def uniform(low, high):
            draws = keras.random.uniform((total,), minval=low, maxval=high, seed=self.seed_generator)
            return draws if replicas == 1 else ops.slice(draws, (offset,), (batch,))

        theta = uniform(-1.0, 1.0) * (self.rotation * math.pi / 180.0)
        k = uniform(-self.shear, self.shear)
        zx = uniform(1.0 - self.zoom, 1.0 + self.zoom)
        zy = uniform(1.0 - self.zoom, 1.0 + self.zoom)
        tx = uniform(-self.shift, self.shift) * width
        ty = uniform(-self.shift, self.shift) * height
        f = ops.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0) if self.hflip else ops.ones((batch,))
        c, s = ops.cos(theta), ops.sin(theta)
        # input = R(theta) . Shear(k) . Zoom(zx, zy) . Flip(f) . (p - centre) + centre + t
        a00, a01 = c * zx * f, (c * k - s) * zy
        a10, a11 = s * zx * f, (s * k + c) * zy
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        a02 = cx + tx - a00 * cx - a01 * cy
        a12 = cy + ty - a10 * cx - a11 * cy
        zeros = ops.zeros_like(a00)
        return ops.stack([a00, a01, a02, a10, a11, a12, zeros, zeros], axis=1)

    def call(self, images, training=None):
        images = ops.cast(images, self.compute_dtype)
        if not training:
            return images
        shape = ops.shape(images)
        matrices = self.transform_matrices(shape[0], images.shape[1], images.shape[2])
        return ops.image.affine_transform(images, matrices,
                                          interpolation=self.interpolation, fill_mode=self.fill_mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "shift": self.shift, "shear": self.shear,
                "zoom": self.zoom, "hflip": self.hflip, "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "seed": self.seed}


def stacked_keras_layers(rotation=20.0, shift=0.2, shear=0.2, zoom=0.2, seed=None) -> list:
    """The naive equivalent with Keras' own layers (one resampling each); the benchmark's reference."""
    return [
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(rotation / 360.0, fill_mode="nearest", seed=seed),
        keras.layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=seed),
        keras.layers.RandomShear(x_factor=shear, y_factor=0.0, fill_mode="nearest", seed=seed),
        keras.layers.RandomZoom(zoom, zoom, fill_mode="nearest", seed=seed),
    ]
