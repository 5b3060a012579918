"""The tf.data input path: parallel decode, aspect-preserving resize + centre crop, cache, prefetch.

This is the only module that uses ``tf.*``; the model, losses and training step stay in
backend-agnostic Keras. TensorFlow is imported inside the functions so importing this module
(from a DAG file, say) costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence


def decode_and_resize(path, image_size: int):
    """Read one image file (JPEG, PNG — also PNG bytes behind a .jpg name — CMYK, grayscale),
    scale its short side to ``image_size`` and centre-crop to a square. Returns float32 0..255."""
    import tensorflow as tf

    raw = tf.io.read_file(path)
    img = tf.io.decode_image(raw, channels=3, expand_animations=False)
    img.set_shape([None, None, 3])
    hw = tf.cast(tf.shape(img)[:2], tf.float32)
    scale = tf.cast(image_size, tf.float32) / tf.reduce_min(hw)
    new_hw = tf.cast(tf.math.ceil(hw * scale), tf.int32)
    img = tf.image.resize(img, new_hw, method="bilinear", antialias=True)
    img = tf.image.resize_with_crop_or_pad(img, image_size, image_size)
    return tf.clip_by_value(img, 0.0, 255.0)


def make_dataset(
    paths: Sequence[str],
    labels: Sequence[int],
    *,
    image_size: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    cache: str | bool = True,
):
    """A batched ``tf.data.Dataset`` of ``(image, label)``.

    Args:
        cache: ``True`` caches decoded images in memory, a path caches them on disk (sets that do
            not fit in memory), ``False`` decodes every epoch.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((list(paths), list(labels)))
    ds = ds.map(lambda p, y: (decode_and_resize(p, image_size), y), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
