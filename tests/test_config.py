import pytest

from painting_ml.config import RunConfig
from painting_ml.exceptions import ConfigError


def test_defaults_are_valid():
    cfg = RunConfig(data_dir="/data")
    assert cfg.optimizer == "adam" and cfg.augment == ("hflip",) and cfg.weights is None


@pytest.mark.parametrize("field,value,message", [
    ("optimizer", "lion", "unknown optimizer 'lion'; choose one of adam, rmsprop, sgd, adamw"),
    ("backbone", "vgg16", "unknown backbone 'vgg16'; choose one of resnet50, resnet101, resnet18"),
    ("fine_tune", "half", "unknown fine_tune 'half'; choose one of all, frozen, last_k, two_phase"),
    ("targets", ("style",), "list artist once"),
    ("targets", ("artist", "mood"), "unknown target 'mood'"),
    ("loss_weights", {"genre": 1.0}, "not among targets"),
    ("label_smoothing", 0.7, "label_smoothing=0.7 is out of range"),
    ("gradient_accumulation_steps", 0, "gradient_accumulation_steps=0 is out of range"),
    ("fine_tune_stages", 6, "fine_tune_stages=6 is out of range"),
    ("epochs", 0, "epochs=0 is out of range"),
    ("image_size", 8, "image_size=8 is out of range"),
    ("n_artists", 1, "n_artists=1 is out of range"),
    ("batch_size", "32", "batch_size='32' must be an integer"),
    ("augment", ("hflip", "twirl"), "unknown augment transform 'twirl'"),
])
def test_invalid_values_name_the_field(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig(data_dir="/d", **{field: value})


def test_fractions_must_leave_training_data():
    with pytest.raises(ConfigError, match="leaves too little to train on"):
        RunConfig(data_dir="/d", val_fraction=0.4, test_fraction=0.45)


def test_from_params_refuses_unknown_keys_listing_known_ones():
    with pytest.raises(ConfigError) as err:
        RunConfig.from_params({"data_dir": "/d", "epoch": 3})
    assert "unknown config key(s) 'epoch'" in str(err.value)
    assert "epochs" in str(err.value) and "optimizer" in str(err.value)


def test_from_params_roundtrip_and_fingerprint():
    cfg = RunConfig.from_params({"data_dir": "/d", "epochs": 2, "augment": "hflip,vflip", "weights": None})
    assert cfg.augment == ("hflip", "vflip")
    again = RunConfig.from_params(cfg.to_dict())
    assert again == cfg and again.fingerprint() == cfg.fingerprint()
    assert RunConfig(data_dir="/d", epochs=3).fingerprint() != cfg.fingerprint()


def test_missing_data_dir():
    with pytest.raises(ConfigError, match="data_dir"):
        RunConfig.from_params({"epochs": 2})


def test_multitask_and_fine_tune_fields_from_params():
    cfg = RunConfig.from_params({"data_dir": "/d", "targets": "artist,style", "loss_weights": {"style": 0.5},
                                 "fine_tune": "two_phase", "epochs": 4, "head_epochs": 2})
    assert cfg.targets == ("artist", "style") and cfg.loss_weight("style") == 0.5 and cfg.loss_weight("artist") == 1.0
    assert RunConfig.from_params(cfg.to_dict()) == cfg
