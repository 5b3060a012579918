"""Grad-CAM on the last conv stage: heatmap shape and range, the split model computes the model's own
scores, a class's map lies where that class's evidence is, bad input, the overlay, and the JAX backend."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from painting_ml.core.errors import ConfigError, DataError
from tests.conftest import REPO, tiny_run_config

pytestmark = pytest.mark.unit


def _two_region_model():
    """A hand-set conv model: channel 0 of the conv layer is the image's red, channel 1 its green;
    class 0 scores the mean red, class 1 the mean green."""
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(2, 1, use_bias=False, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="artist")(x))
    model.get_layer("conv").set_weights([np.array([[[[1, 0], [0, 1], [0, 0]]]], "float32")])
    model.get_layer("artist").set_weights([np.eye(2, dtype="float32"), np.zeros(2, "float32")])
    return model


def _left_red_right_green() -> np.ndarray:
    image = np.zeros((1, 16, 16, 3), "float32")
    image[0, :, :8, 0] = 200
    image[0, :, 8:, 1] = 200
    return image


@pytest.fixture(scope="module")
def resnet():
    """An untrained multi-task (artist + style) ResNet18 at 64 px, as create_model builds it."""
    import keras

    from painting_ml.learn.models import create_model

    keras.utils.set_random_seed(0)
    return create_model(tiny_run_config("/nowhere", targets=("artist", "style"), image_size=64),
                        {"artist": 3, "style": 2})


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype("float32")


def test_heatmaps_at_input_size_in_unit_range(resnet, images):
    from painting_ml.learn.gradcam import grad_cam

    one = grad_cam(resnet, images, [0, 1, 2])
    assert one.shape == (3, 64, 64) and one.dtype == np.float32
    # Each map is scaled to a peak of 1; an untrained network can have no positive evidence for a
    # class (ReLU of the weighted activations all zero), and then the map is all zero, never NaN.
    peaks = one.max(axis=(1, 2))
    assert one.min() >= 0.0 and one.max() <= 1.0 and np.isfinite(one).all()
    assert (np.isclose(peaks, 1.0) | (peaks == 0.0)).all() and np.isclose(peaks, 1.0).any()
    both = grad_cam(resnet, images, [[0, 1], [1, 2], [2, 0]], batch_size=2)  # two batches, two classes each
    assert both.shape == (3, 2, 64, 64)
    np.testing.assert_allclose(both[:, 0], one, atol=1e-5)  # per image: independent of batch and class set
    assert np.abs(both[:, 0] - both[:, 1]).max() > 0.05  # another class, another map
    assert grad_cam(resnet, images[:0], []).shape == (0, 64, 64)


def test_split_model_computes_the_models_own_artist_scores(resnet, images):
    """features -> head -> the artist Dense's logits is the model: softmax of them is its artist output,
    also through the wrapper load_run_model builds (outputs plus the embedding)."""
    import keras
    from keras import ops

    from painting_ml.learn.gradcam import split_model
    from painting_ml.learn.models import EMBEDDING_LAYER

    wrapped = keras.Model(resnet.inputs[0], {**{t: resnet.get_layer(t).output for t in ("artist", "style")},
                                          "embedding": resnet.get_layer(EMBEDDING_LAYER).output})
    for model in (resnet, wrapped):
        cm = split_model(model, "artist")
        acts = cm.features(images, training=False)
        assert tuple(acts.shape) == (3, 2, 2, 512)  # conv5 of ResNet18 at 64 px
        logits = ops.matmul(cm.head(acts, training=False), cm.kernel) + cm.bias
        np.testing.assert_allclose(ops.convert_to_numpy(ops.softmax(logits)),
                                   ops.convert_to_numpy(model(images, training=False)["artist"]), atol=1e-5)
    assert split_model(resnet, "style").n_classes == 2


def test_heatmap_lies_where_the_class_evidence_is():
    from painting_ml.learn.gradcam import grad_cam

    maps = grad_cam(_two_region_model(), _left_red_right_green(), [[0, 1]])[0]
    red, green = maps
    assert red[:, :7].min() > 0.9 and red[:, 9:].max() < 0.1      # class "red": the left half
    assert green[:, 9:].min() > 0.9 and green[:, :7].max() < 0.1  # class "green": the right half


def test_bad_input_is_one_line():
    from painting_ml.learn.gradcam import grad_cam, split_model

    model = _two_region_model()
    with pytest.raises(DataError, match=r"\(B, 16, 16, 3\)"):
        grad_cam(model, np.zeros((1, 32, 32, 3)), [0])
    with pytest.raises(DataError, match="class ids"):
        grad_cam(model, np.zeros((1, 16, 16, 3)), [2])
    with pytest.raises(DataError, match="class ids"):
        grad_cam(model, np.zeros((2, 16, 16, 3)), [0])
    with pytest.raises(ConfigError, match="no output layer 'style'"):
        split_model(model, "style")


def test_overlay_blends_the_colour_map_on_the_painting():
    from PIL import Image

    from painting_ml.learn.gradcam import overlay

    painting = np.full((16, 16, 3), 100, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[:, 2:] = 1.0
    out = overlay(painting, heat, alpha=0.5)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (16, 16)
    pixels = np.asarray(out).astype(int)
    assert pixels[:, 0, 0].mean() < pixels[:, -1, 0].mean()  # jet: blue where 0, red where 1
    assert (np.asarray(overlay(painting, heat, alpha=0.0)) == painting).all()
    assert overlay(Image.fromarray(painting), heat, size=160).size == (160, 160)


_JAX_SCRIPT = textwrap.dedent("""
    import json, numpy as np, keras
    from painting_ml.learn.gradcam import grad_cam
    from painting_ml.learn.models import create_model
    from tests.conftest import tiny_run_config
    from tests.test_gradcam import _left_red_right_green, _two_region_model
    red, green = grad_cam(_two_region_model(), _left_red_right_green(), [[0, 1]])[0]
    model = create_model(tiny_run_config("/nowhere", targets=("artist", "style"), image_size=64),
                         {"artist": 3, "style": 2})
    maps = grad_cam(model, np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)), [[0, 1], [2, 0]])
    print(json.dumps({"backend": keras.backend.backend(), "red_left": float(red[:, :7].min()),
                      "red_right": float(red[:, 9:].max()), "green_right": float(green[:, 9:].min()),
                      "shape": list(maps.shape), "lo": float(maps.min()), "hi": float(maps.max())}))
""")


@pytest.mark.e2e
def test_grad_cam_on_the_jax_backend():
    """The same Grad-CAM through jax.grad (a fresh process: the backend is chosen at import)."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _JAX_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["backend"] == "jax"
    assert got["red_left"] > 0.9 and got["red_right"] < 0.1 and got["green_right"] > 0.9
    assert got["shape"] == [2, 2, 64, 64] and got["lo"] >= 0.0 and got["hi"] <= 1.0
