"""The model factory: backbones, weights files, heads, fine-tuning modes, loss, optimizers."""

import keras
import numpy as np
import pytest
from conftest import traced_steps, using_setting

from painting_ml.core.config import CPU_DEMO, RunConfig  # noqa: E402
from painting_ml.core.errors import ConfigError  # noqa: E402
from painting_ml.learn.models import (  # noqa: E402
    MaskedAccuracy,
    MaskedSparseCrossentropy,
    compile_model,
    create_backbone,
    create_model,
    create_optimizer,
    resnet18,
    stage_of,
)
from painting_ml.learn.training import plan_phases  # noqa: E402

pytestmark = pytest.mark.train


def cfg(**kw):
    base = dict(data_dir="-", backbone="resnet18", image_size=32, online_augment=False, batch_size=8, seed=1)
    return RunConfig(**{**CPU_DEMO, **base, **kw})


def test_resnet18_has_the_published_shape():
    m = resnet18((224, 224, 3))
    trainable = sum(int(np.prod(w.shape)) for w in m.trainable_weights)
    # torchvision's resnet18 without its fc layer: 11,689,512 - 513,000 parameters.
    assert trainable == 11_176_512
    convs = [layer for layer in m.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 1 + 16 + 3  # stem, two 3x3 per block x 8 blocks, 3 projection shortcuts
    assert m.output.shape == (None, 512)
    assert sum(isinstance(layer, keras.layers.Add) for layer in m.layers) == 8


def test_resnet18_learns_a_separable_task_in_inference_mode():
    rng = np.random.default_rng(0)
    n = 96
    y = np.arange(n) % 2
    x = rng.uniform(0, 120, (n, 32, 32, 3)).astype("float32")
    x[y == 1, :, :, 0] += 120  # class 1 is redder
    c = cfg(head_units=32, dropout=0.0, l2=0.0, class_weights=False)
    keras.utils.set_random_seed(0)  # deterministic init; a gentle LR (1e-3 spiked the loss on this toy task)
    model = create_model(c, 2)
    with traced_steps():  # 36 steps: traced, they take 25 % less time than op by op
        compile_model(model, c, 3e-4)
    model.fit(x, y, batch_size=16, epochs=6, verbose=0)
    acc = (model.predict(x, verbose=0)["artist"].argmax(1) == y).mean()
    assert acc >= 0.9  # inference mode: BN moving statistics have settled (momentum 0.9)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_local_weights_file_round_trip(tmp_path, backbone):
    c = cfg(backbone=backbone)
    source = create_backbone(c)
    path = tmp_path / f"{backbone}_notop.weights.h5"
    source.save_weights(path)
    model = create_model(cfg(backbone=backbone, weights=str(path)), 3)
    loaded = model.get_layer("backbone")
    assert len(loaded.weights) == len(source.weights)
    for a, b in zip(source.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    fresh = create_model(c, 3).get_layer("backbone")
    fresh_w0 = keras.ops.convert_to_numpy(fresh.weights[0])
    assert not np.array_equal(fresh_w0, keras.ops.convert_to_numpy(source.weights[0]))


def test_weights_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        create_model(cfg(weights=str(tmp_path / "missing.h5")), 3)
    other = tmp_path / "r18.weights.h5"
    create_backbone(cfg()).save_weights(other)
    with pytest.raises(ConfigError, match="does not fit backbone resnet50"):
        create_model(cfg(backbone="resnet50", weights=str(other)), 3)
    with pytest.raises(ConfigError, match="no ImageNet weights for resnet18"):
        create_model(cfg(weights="imagenet"), 3)


def test_resnet101_builds_with_named_stages():
    b = create_backbone(cfg(backbone="resnet101"))
    stages = {stage_of(layer.name) for layer in b.layers}
    assert stages == {1, 2, 3, 4, 5}
    assert sum(layer.name.startswith("conv4_") and layer.name.endswith("_out") for layer in b.layers) == 23


def test_multi_task_heads_and_embedding():
    c = cfg(targets=("artist", "style", "genre"), head_units=64)
    model = create_model(c, {"artist": 5, "style": 3, "genre": 4})
    out = model(np.zeros((2, 32, 32, 3), "float32"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"artist": (2, 5), "style": (2, 3), "genre": (2, 4)}
    assert model.get_layer("embedding").output.shape == (None, 64)
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in out.values())


def _fit_once(model, c, n=16):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, n)
    compile_model(model, c, 1e-2)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def _snapshot(layers):
    return {w.path: keras.ops.convert_to_numpy(w).copy() for layer in layers for w in layer.weights}


def test_frozen_backbone_does_not_change_and_bn_stays_in_inference_mode():
    c = cfg(fine_tune="frozen")
    model = create_model(c, 3)
    backbone = model.get_layer("backbone")
    before, head_before = _snapshot([backbone]), _snapshot([model.get_layer("artist")])
    assert any("moving_mean" in k for k in before)
    _fit_once(model, c)
    after, head_after = _snapshot([backbone]), _snapshot([model.get_layer("artist")])
    assert all(np.array_equal(before[k], after[k]) for k in before)  # incl. BN moving statistics
    assert any(not np.array_equal(head_before[k], head_after[k]) for k in head_before)


def test_pretrained_stages_unfrozen_in_phase_two_keep_bn_statistics(tmp_path):
    """Keras transfer-learning guide: on pretrained weights, BN layers stay in inference mode when
    their stage is unfrozen, so phase 2 moves the stage's kernels but not its moving statistics."""
    from painting_ml.learn.models import set_trainable

    path = tmp_path / "resnet18_notop.weights.h5"
    create_backbone(cfg()).save_weights(path)
    c = cfg(weights=str(path), fine_tune="two_phase", epochs=2, head_epochs=1, fine_tune_stages=1)
    model = create_model(c, 3)
    set_trainable(model, "last_k", 1, freeze_bn=True)  # what phase 2 does
    backbone = model.get_layer("backbone")
    late = [layer for layer in backbone.layers if stage_of(layer.name) == 5 and layer.weights]
    bns = [layer for layer in late if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and not any(layer.trainable for layer in bns)
    before = _snapshot(late)
    _fit_once(model, c)
    after = _snapshot(late)
    moving = [k for k in before if "moving_" in k]
    assert moving and all(np.array_equal(before[k], after[k]) for k in moving)
    assert any(not np.array_equal(before[k], after[k]) for k in before if "kernel" in k)
    # From random init BN layers keep training (they have nothing worth keeping).
    scratch = create_model(cfg(fine_tune="last_k"), 3).get_layer("backbone")
    assert any(layer.trainable for layer in scratch.layers if isinstance(layer, keras.layers.BatchNormalization))


def test_last_k_trains_only_the_last_stages():
    c = cfg(fine_tune="last_k", fine_tune_stages=1)
    model = create_model(c, 3)
    backbone = model.get_layer("backbone")
    early = [layer for layer in backbone.layers if stage_of(layer.name) <= 4 and layer.weights]
    late = [layer for layer in backbone.layers if stage_of(layer.name) == 5 and layer.weights]
    b_early, b_late = _snapshot(early), _snapshot(late)
    _fit_once(model, c)
    a_early, a_late = _snapshot(early), _snapshot(late)
    assert all(np.array_equal(b_early[k], a_early[k]) for k in b_early)
    assert any(not np.array_equal(b_late[k], a_late[k]) for k in b_late if "kernel" in k)


def test_two_phase_plan():
    phases = plan_phases(cfg(fine_tune="two_phase", epochs=5, head_epochs=2, fine_tune_stages=2,
                             learning_rate=1e-3, fine_tune_lr_factor=0.1))
    assert [(p.mode, p.start, p.end) for p in phases] == [("frozen", 0, 2), ("last_k", 2, 5)]
    assert phases[1].learning_rate == pytest.approx(1e-4)
    assert plan_phases(cfg(fine_tune="two_phase", epochs=3, fine_tune_stages=5))[1].mode == "all"
    with pytest.raises(ConfigError, match="head_epochs < epochs"):
        cfg(fine_tune="two_phase", epochs=2, head_epochs=2)


def test_gradient_accumulation_updates_every_n_steps():
    c = cfg(optimizer="sgd", learning_rate=0.1, gradient_accumulation_steps=3, momentum=0.0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=create_optimizer(c), loss="mse")
    x, y = np.ones((2, 4), "float32"), np.zeros((2, 2), "float32")
    w0 = keras.ops.convert_to_numpy(model.weights[0]).copy()
    history = []
    for _ in range(6):
        model.train_on_batch(x, y)
        history.append(keras.ops.convert_to_numpy(model.weights[0]).copy())
    changed = [not np.array_equal(a, b) for a, b in zip([w0] + history[:-1], history, strict=True)]
    assert changed == [False, False, True, False, False, True]


@pytest.mark.parametrize("name,cls", [("adam", "Adam"), ("adamw", "AdamW"), ("rmsprop", "RMSprop"), ("sgd", "SGD")])
def test_optimizers(name, cls):
    opt = create_optimizer(cfg(optimizer=name, learning_rate=0.01, nesterov=True))
    assert type(opt).__name__ == cls
    assert float(keras.ops.convert_to_numpy(opt.learning_rate)) == pytest.approx(0.01)
    if name == "sgd":
        assert opt.nesterov and opt.momentum == pytest.approx(0.9)


def test_unknown_optimizer_lists_the_choices():
    with pytest.raises(ConfigError, match="optimizer=.adagrad.: .*use one of adam, adamw, rmsprop, sgd"):
        cfg(optimizer="adagrad")


def test_masked_loss_and_label_smoothing():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], "float32")
    loss = MaskedSparseCrossentropy(3, reduction=None)
    per_row = keras.ops.convert_to_numpy(loss(np.array([0, -1]), probs))
    np.testing.assert_allclose(per_row, [-np.log(0.7), 0.0], rtol=1e-5)
    smooth = MaskedSparseCrossentropy(3, label_smoothing=0.3, reduction=None)
    target = np.array([0.8, 0.1, 0.1])  # 0.7 * onehot + 0.3 / 3
    expected = -(target * np.log(probs[0])).sum()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(smooth(np.array([0]), probs[:1])), [expected], rtol=1e-5)
    acc = MaskedAccuracy()
    acc.update_state(np.array([0, -1, 2]), np.array([[0.9, 0.1, 0], [0.9, 0.1, 0], [0.9, 0.1, 0]]))
    assert float(acc.result()) == pytest.approx(0.5)


def test_the_run_eagerly_setting_trains_op_by_op_to_the_same_weights():
    """PAINTING_RUN_EAGERLY compiles the model to run op by op; the training it does is the traced one's."""
    c = cfg(optimizer="adam", learning_rate=1e-2, gradient_accumulation_steps=2)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 4)).astype("float32"), rng.integers(0, 3, 12)
    trained = {}
    for eager in ("0", "1"):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        model = keras.Model(inputs, {"artist": keras.layers.Dense(3, activation="softmax", name="artist")(hidden)})
        with using_setting("PAINTING_RUN_EAGERLY", eager):
            compile_model(model, c)
        assert model.run_eagerly is (eager == "1")
        losses = model.fit(x, {"artist": y}, batch_size=4, epochs=3, shuffle=False, verbose=0).history["loss"]
        trained[eager] = losses, [keras.ops.convert_to_numpy(w) for w in model.weights]
    (traced_losses, traced_weights), (eager_losses, eager_weights) = trained["0"], trained["1"]
    np.testing.assert_allclose(eager_losses, traced_losses, rtol=1e-5)
    for a, b in zip(eager_weights, traced_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
