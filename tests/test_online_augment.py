import numpy as np
import pytest

from painting_ml.learn.online_augment import RandomAffine  # noqa: E402

pytestmark = pytest.mark.unit


def _dot_batch(n=16):
    x = np.zeros((n, 9, 9, 1), np.float32)
    x[:, 4, 6, 0] = 1.0  # a dot two pixels right of the centre
    return x


def test_identity_outside_training_and_with_zero_ranges():
    x = _dot_batch()
    assert np.array_equal(np.asarray(RandomAffine(seed=0)(x, training=False)), x)
    still = RandomAffine(rotation=0, shift=0, shear=0, zoom=0, hflip=False, seed=0)
    assert np.allclose(np.asarray(still(x, training=True)), x)


def test_flip_only_mirrors_about_the_centre():
    layer = RandomAffine(rotation=0, shift=0, shear=0, zoom=0, hflip=True, seed=1,
                         interpolation="nearest", fill_mode="constant")
    out = np.asarray(layer(_dot_batch(), training=True))
    positions = {tuple(np.argwhere(o[..., 0] > 0.5)[0]) for o in out}
    assert positions == {(4, 6), (4, 2)}


def test_rotation_keeps_distance_to_centre():
    layer = RandomAffine(rotation=90, shift=0, shear=0, zoom=0, hflip=False, seed=2, fill_mode="constant")
    out = np.asarray(layer(_dot_batch(8), training=True))
    for o in out:
        # centre of mass of the (interpolated) dot stays ~2 px from the centre
        w = o[..., 0]
        yy, xx = np.indices(w.shape)
        cy, cx = (w * yy).sum() / w.sum(), (w * xx).sum() / w.sum()
        assert abs(np.hypot(cy - 4, cx - 4) - 2.0) < 0.35


def test_shapes_dtype_and_config_roundtrip():
    layer = RandomAffine(rotation=10, shift=0.1, shear=0.1, zoom=0.1, seed=3)
    out = layer(np.zeros((2, 16, 16, 3), np.uint8), training=True)
    assert tuple(out.shape) == (2, 16, 16, 3) and "float32" in str(out.dtype)
    clone = RandomAffine.from_config(layer.get_config())
    assert (clone.rotation, clone.shift, clone.zoom, clone.fill_mode) == (10.0, 0.1, 0.1, "nearest")
