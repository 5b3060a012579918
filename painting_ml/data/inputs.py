"""The tf.data input path: parallel decode, one aspect-preserving resize (centre crop or pad),
cache, shuffle, batch, prefetch.

This is the only module that uses ``tf.*``; the model, its online augmentation, losses and the
training step stay in backend-agnostic Keras. TensorFlow is imported inside the functions, so
importing this module (from a DAG file, say) costs nothing.

Images are cached as uint8 after the resize — a quarter of float32's memory — and converted to
float32 per batch. ``cache="disk"`` keeps memory flat for sets that do not fit in RAM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf
    from numpy.typing import NDArray

RESIZE_MODES = ("crop", "pad")
CACHE_MODES = ("memory", "disk", "none")


def _decode(raw: tf.Tensor, needed: int, resize_mode: str) -> tf.Tensor:
    """Decode to uint8 RGB. JPEGs are decoded with DCT scaling (1/2, 1/4, 1/8) when the image
    stays at least ``needed`` pixels on the side that matters — far less work on large paintings."""
    import tensorflow as tf

    def jpeg() -> tf.Tensor:
        hw = tf.io.extract_jpeg_shape(raw)[:2]
        side = tf.reduce_min(hw) if resize_mode == "crop" else tf.reduce_max(hw)
        # index into (1, 2, 4, 8): the largest ratio that keeps `side // ratio >= needed`
        idx = tf.reduce_sum(tf.cast(side // tf.constant([2, 4, 8]) >= needed, tf.int32))
        branches = [lambda r=r: tf.io.decode_jpeg(raw, channels=3, ratio=r, dct_method="INTEGER_FAST")
                    for r in (1, 2, 4, 8)]
        return tf.switch_case(idx, branches)

    def other() -> tf.Tensor:
        return tf.io.decode_image(raw, channels=3, expand_animations=False)

    img = tf.cond(tf.io.is_jpeg(raw), jpeg, other)
    img.set_shape([None, None, 3])
    return img


def decode_and_resize(path: tf.Tensor | str, image_size: int, resize_mode: str = "crop") -> tf.Tensor:
    """Read one image file (JPEG incl. CMYK/grayscale, PNG incl. palette/RGBA/16-bit — also PNG
    bytes behind a .jpg name — BMP, GIF's first frame, WebP), resize once to ``image_size`` keeping
    the aspect ratio, and centre-crop (``crop``) or pad (``pad``) to a square. Returns uint8
    ``(S, S, 3)``.

    Ingest admits only files this decodes as PIL does (:mod:`painting_ml.data.images`, the decoder
    contract); what it would decode differently — EXIF-rotated or oversized JPEGs — reaches it as
    the converted copy in ``paintings.reduced_path``."""
    import tensorflow as tf

    return decode_bytes_and_resize(tf.io.read_file(path), image_size, resize_mode)


def decode_bytes_and_resize(raw: tf.Tensor, image_size: int, resize_mode: str = "crop") -> tf.Tensor:
    """One encoded image (a scalar ``tf.string``) to uint8 ``(S, S, 3)``: what
    :func:`decode_and_resize` does after reading the file, and what the champion's serving export
    (painting_ml.learn.export) does inside its graph, so the two cannot drift apart."""
    import tensorflow as tf

    img = _decode(raw, image_size, resize_mode)
    hw = tf.cast(tf.shape(img)[:2], tf.float32)
    side = tf.cast(image_size, tf.float32)
    scale = side / (tf.reduce_min(hw) if resize_mode == "crop" else tf.reduce_max(hw))
    new_hw = tf.maximum(tf.cast(tf.math.round(hw * scale), tf.int32), 1)
    # After the DCT-scaled decode the rest of a JPEG's shrink is at most 2x (unless even 1/8 was
    # too big): there plain bilinear, which blends the 2x2 source pixels around each sample, already
    # covers the source and does not alias — at under half the cost of "area" (bench:
    # 0.3 vs 1.6 ms per 512x384 painting to 224 px). Larger shrinks (PNGs, huge JPEGs, "pad"'s
    # long side) keep "area", which averages every source pixel.
    img = tf.cond(scale >= 0.5,
                  lambda: tf.image.resize(img, new_hw, method="bilinear"),
                  lambda: tf.image.resize(img, new_hw, method="area"))
    img = tf.image.resize_with_crop_or_pad(img, image_size, image_size)
    return tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)


def make_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | Mapping[str, Sequence[int]] | None,
    *,
    image_size: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    cache: str = "memory",
    cache_dir: str | Path | None = None,
    resize_mode: str = "crop",
    shuffle_buffer: int = 1024,
    sample_weights: Sequence[float] | NDArray[np.floating[Any]] | None = None,
    grey: bool = False,
) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of ``(uint8 image (B, S, S, 3), label[, sample weight])``.

    Args:
        labels: one int label per path, a ``{target: labels}`` dict for multi-output models, or
            ``None`` for images only (prediction).
        sample_weights: optional per-image loss weights (class weighting), a third element.
        cache: ``memory`` (decoded, resized uint8 images kept in RAM), ``disk`` (the same in
            files under ``cache_dir``: memory stays flat whatever the set size) or ``none``.
        resize_mode: ``crop`` (short side to ``image_size``, centre crop) or ``pad``.
        grey: every image without its colours (luma in all three channels), as a grey painting is:
            the label audit compares a grey painting with grey views of the paintings that vote.
    """
    import tensorflow as tf

    if cache not in CACHE_MODES:
        raise ValueError(f"unknown cache mode {cache!r}; choose one of {', '.join(CACHE_MODES)}")
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize_mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    if labels is None:
        parts: tuple[Any, ...] = (list(paths),)
    elif isinstance(labels, Mapping):
        parts = (list(paths), {k: list(v) for k, v in labels.items()})
    else:
        parts = (list(paths), list(labels))
    if sample_weights is not None:
        parts = parts + (list(map(float, sample_weights)),)
    ds = tf.data.Dataset.from_tensor_slices(parts if len(parts) > 1 else parts[0])

    def load(p: tf.Tensor, *rest: tf.Tensor) -> tf.Tensor | tuple[tf.Tensor, ...]:
        img = decode_and_resize(p, image_size, resize_mode)
        if grey:
            img = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(img))
        return (img, *rest) if rest else img

    # The decode branches with tf.cond / tf.switch_case itself: AutoGraph conversion (tf.data's
    # default for a map function) would only add set-up time to every dataset built, which an
    # attribution shard pays on top of its model load.
    ds = ds.map(tf.autograph.experimental.do_not_convert(load), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    if cache == "memory":
        ds = ds.cache()
    elif cache == "disk":
        if cache_dir is None:
            raise ValueError("cache='disk' needs a cache_dir")
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        ds = ds.cache(str(Path(cache_dir) / "images"))
    if shuffle:
        # A bounded buffer keeps memory flat however many images there are; with the disk cache
        # that is what makes peak RSS independent of the set size.
        ds = ds.shuffle(min(len(paths), shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    # Batches stay uint8 (a quarter of the bytes to move); the model casts on the device.
    ds = ds.batch(batch_size).prefetch(2)
    # Autotuning grows buffers over the steps of an epoch; a RAM budget keeps them bounded, so
    # memory does not rise with the number of images.
    options = tf.data.Options()
    options.autotune.ram_budget = 256 * 1024 * 1024
    return ds.with_options(options)
