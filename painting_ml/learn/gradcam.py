"""Grad-CAM (Selvaraju et al. 2017): where in a painting a model looked when it scored an artist.

The heatmap of class ``c`` is the ReLU of the last convolutional stage's activation maps, each
weighted by the spatial mean of the gradient of ``c``'s score (its pre-softmax logit) with respect
to that map, upsampled to the model's input size and scaled to [0, 1].

The model is split in two Keras models built on its existing tensors: ``features`` (the image to
the last 4-D activations, the input of the backbone's global pooling) and ``head`` (those
activations to the features the target's output layer reads). The gradient of the logit with
respect to the activations is the one step that needs the backend's autodiff (TensorFlow's
``GradientTape``, ``jax.grad`` or torch autograd); the rest is ``keras.ops``. It works for the
models of :func:`painting_ml.learn.models.create_model` (a nested ResNet backbone, one or more
target heads: the ``target`` output is used), as saved or as wrapped by
:func:`painting_ml.learn.inference.load_run_model`, and for flat convolutional models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from painting_ml.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray
    from PIL import Image

#: Images per forward/backward pass.
BATCH = 32


@dataclass
class CamModel:
    """A classifier split at its last convolutional stage, for one target output."""

    features: Any          # keras.Model: image -> activations (B, h, w, C)
    head: Any              # keras.Model: activations -> the output layer's input features
    kernel: Any            # the output Dense layer's kernel and bias: logits = head @ kernel + bias
    bias: Any
    image_size: tuple[int, int]
    n_classes: int


def _last_4d(model: Any) -> Any | None:
    """The last layer of ``model`` (topological order) with a 4-D output: the last conv stage."""
    found = None
    for layer in model.layers:
        output = getattr(layer, "output", None)
        if output is not None and not isinstance(output, (list, tuple, dict)) and len(output.shape) == 4:
            found = layer
    return found


def split_model(model: Any, target: str = "artist") -> CamModel:
    """Split ``model`` at its last convolutional stage for the ``target`` output layer.

    Args:
        model: a Keras functional model whose ``target`` output is a Dense layer (softmax or linear).
        target: the output layer's name (``artist`` for the multi-task models).

    Raises:
        ConfigError: the model has no such output layer or no convolutional stage before it.
    """
    import keras

    try:
        out_layer = model.get_layer(target)
    except ValueError:
        raise ConfigError(f"the model has no output layer {target!r} for Grad-CAM; pass target= one of its "
                          f"outputs ({', '.join(model.output_names)})") from None
    if not hasattr(out_layer, "kernel"):
        raise ConfigError(f"Grad-CAM reads the logits of a Dense output layer; {target!r} is a "
                          f"{type(out_layer).__name__}")
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model) and _last_4d(layer) is not None]
    if nested:
        # A nested backbone (create_model): its last 4-D layer lives in the backbone's own graph, so
        # the split joins three pieces: the outer layers before the backbone, the backbone up to
        # (and after) that layer, and the outer layers from the backbone's output to the target.
        backbone = nested[-1]
        inner: Any = _last_4d(backbone)
        call = backbone._inbound_nodes[0]  # the backbone's call in the outer graph (Keras has no public accessor)
        to_stage = keras.Model(backbone.inputs, inner.output, name="gradcam_stage")
        features = keras.Model(inputs, to_stage(call.input_tensors[0]), name="gradcam_features")
        after_stage = keras.Model(inner.output, backbone.outputs[0], name="gradcam_pool")
        to_target = keras.Model(call.output_tensors[0], out_layer.input, name="gradcam_target")
        activations = keras.Input(inner.output.shape[1:])
        head = keras.Model(activations, to_target(after_stage(activations)), name="gradcam_head")
    else:
        last = _last_4d(model)
        if last is None:
            raise ConfigError(f"the model {model.name!r} has no convolutional stage (no 4-D activations) for "
                              "Grad-CAM")
        features = keras.Model(inputs, last.output, name="gradcam_features")
        head = keras.Model(last.output, out_layer.input, name="gradcam_head")
    size = tuple(int(s) for s in model.inputs[0].shape[1:3])
    return CamModel(features, head, out_layer.kernel, out_layer.bias, (size[0], size[1]), int(out_layer.units))


def _gradient(score: Any, x: Any) -> Any:
    """d score(x) / dx for a scalar function ``score``, with the backend's autodiff."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = score(x)
        return tape.gradient(value, x)
    if backend == "jax":
        import jax

        return jax.grad(score)(x)
    if backend == "torch":
        import torch

        x = keras.ops.convert_to_tensor(x).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(score(x), x)
        return grad
    raise ConfigError(f"Grad-CAM has no gradient for the Keras backend {backend!r}; set KERAS_BACKEND to "
                      "tensorflow, jax or torch")


def _cams(cm: CamModel, images: Any, class_ids: NDArray[np.int64]) -> NDArray[np.float32]:
    """Heatmaps ``(B, K, H, W)`` in [0, 1] for one batch and ``K`` classes per image."""
    from keras import ops

    acts = ops.convert_to_tensor(cm.features(images, training=False), dtype="float32")
    kernel = ops.convert_to_tensor(cm.kernel, dtype="float32")
    bias = ops.convert_to_tensor(cm.bias, dtype="float32")
    maps = []
    for k in range(class_ids.shape[1]):
        onehot = ops.one_hot(ops.convert_to_tensor(class_ids[:, k]), cm.n_classes, dtype="float32")

        def score(a: Any, onehot: Any = onehot) -> Any:
            # Images are independent in inference mode, so the gradient of the sum is each image's own.
            logits = ops.matmul(ops.cast(cm.head(a, training=False), "float32"), kernel) + bias
            return ops.sum(logits * onehot)

        grads = _gradient(score, acts)
        weights = ops.mean(grads, axis=(1, 2))                                  # (B, C)
        cam = ops.relu(ops.sum(acts * weights[:, None, None, :], axis=-1))      # (B, h, w)
        cam = ops.image.resize(cam[..., None], cm.image_size, interpolation="bilinear")[..., 0]
        cam = ops.relu(cam)
        peak = ops.max(cam, axis=(1, 2), keepdims=True)
        maps.append(ops.where(peak > 0, cam / ops.maximum(peak, 1e-12), ops.zeros_like(cam)))
    return np.stack([np.asarray(ops.convert_to_numpy(m), dtype=np.float32) for m in maps], axis=1)


def grad_cam(model: Any, images: ArrayLike, class_ids: ArrayLike, target: str = "artist",
             batch_size: int = BATCH) -> NDArray[np.float32]:
    """Grad-CAM heatmaps of ``model`` for ``images`` and their classes.

    Args:
        model: a Keras model (see :func:`split_model`), or a :class:`CamModel` already split.
        images: ``(B, H, W, 3)`` raw 0..255 RGB pixels at the model's input size.
        class_ids: ``(B,)`` one class per image, or ``(B, K)`` several (the activations are
            computed once per image).
        target: the output whose classes ``class_ids`` index.
        batch_size: images per pass.

    Returns:
        ``(B, H, W)`` (or ``(B, K, H, W)``) float32 heatmaps in [0, 1] at the input size; an
        all-zero map where no activation pushes the class's score up.

    Raises:
        DataError: the images are not ``(B, H, W, 3)`` at the model's input size, or the class ids
            do not match them.
    """
    cm = model if isinstance(model, CamModel) else split_model(model, target)
    pixels = np.asarray(images, dtype=np.float32)
    ids = np.asarray(class_ids, dtype=np.int64)
    single = ids.ndim == 1
    ids = ids[:, None] if single else ids
    if pixels.ndim != 4 or pixels.shape[1:3] != cm.image_size or pixels.shape[3] != 3:
        raise DataError(f"Grad-CAM images have shape {pixels.shape}; pass (B, {cm.image_size[0]}, "
                        f"{cm.image_size[1]}, 3) pixels at the model's input size")
    if ids.ndim != 2 or len(ids) != len(pixels) or (ids.size and not (ids.min() >= 0 and ids.max() < cm.n_classes)):
        raise DataError(f"Grad-CAM class ids {ids.shape} do not fit {len(pixels)} images and {cm.n_classes} "
                        "classes; pass one id (or one row of ids) per image, each in 0..n_classes-1")
    if not len(pixels):
        out = np.zeros((0, ids.shape[1], *cm.image_size), np.float32)
    else:
        out = np.concatenate([_cams(cm, pixels[s:s + batch_size], ids[s:s + batch_size])
                              for s in range(0, len(pixels), batch_size)])
    return out[:, 0] if single else out


def overlay(image: ArrayLike | Image.Image, heatmap: ArrayLike, alpha: float = 0.45, colormap: str = "jet",
            size: int | None = None) -> Image.Image:
    """The painting with ``heatmap`` (values in [0, 1]) blended on it in a matplotlib colour map.

    Args:
        image: the pixels the model saw (``(H, W, 3)`` 0..255) or a PIL image.
        heatmap: ``(h, w)``; resized to the image.
        alpha: the heatmap's weight (0: the painting only).
        size: scale the result so its longer side is ``size`` px (a 32 px model input is hard to see).
    """
    import matplotlib
    from PIL import Image

    base = image.convert("RGB") if isinstance(image, Image.Image) else \
        Image.fromarray(np.clip(np.asarray(image, dtype=np.float32), 0, 255).astype(np.uint8), "RGB")
    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    if heat.shape != (base.height, base.width):
        heat = np.asarray(Image.fromarray(heat, "F").resize(base.size, Image.Resampling.BILINEAR), np.float32)
    colours = matplotlib.colormaps[colormap](np.clip(heat, 0.0, 1.0))[..., :3]
    blended = (1 - alpha) * np.asarray(base, np.float32) + alpha * 255.0 * colours
    out = Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), "RGB")
    if size and max(out.size) != size:
        scale = size / max(out.size)
        out = out.resize((max(1, round(out.width * scale)), max(1, round(out.height * scale))),
                         Image.Resampling.BICUBIC)
    return out
