"""The config schema: validation messages, round trips, and the three things generated from it
(the DAG's Params, the CLI flags, the README table)."""

import argparse
import re
from pathlib import Path

import pytest
from pydantic import Field

from painting_ml.core.config import CPU_DEMO, RunConfig, Section, markdown_table, sections
from painting_ml.core.errors import ConfigError
from painting_ml.core.settings import reload_settings

REPO = Path(__file__).resolve().parent.parent


def test_defaults_are_valid_and_the_production_recipe(monkeypatch, tmp_path):
    monkeypatch.setenv("PAINTING_HOME", str(tmp_path))
    monkeypatch.delenv("PAINTING_WEIGHTS", raising=False)
    monkeypatch.delenv("PAINTING_WEIGHTS_DIR", raising=False)
    reload_settings()
    try:
        cfg = RunConfig(data_dir="/data")
    finally:
        monkeypatch.undo()
        reload_settings()
    assert cfg.optimizer == "adam" and cfg.augment == ("hflip",)
    assert type(cfg.optimizer) is str and cfg.to_dict()["optimizers"] == ["adam"]
    # ResNet50 at 224 px from the Keras ImageNet no-top file on the weights volume, two-phase.
    assert cfg.weights == str(tmp_path / "weights" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert (cfg.backbone, cfg.image_size, cfg.fine_tune, cfg.fine_tune_stages, cfg.head_epochs) == \
        ("resnet50", 224, "two_phase", 2, 5)
    assert (cfg.dropout, cfg.l2, cfg.gradient_accumulation_steps, cfg.epochs, cfg.early_stopping_patience) == \
        (0.4, 0.01, 4, 30, 5)
    demo = RunConfig(data_dir="/d", **CPU_DEMO)
    assert demo.weights is None and demo.image_size == 64 and demo.optimizers == ("adam", "rmsprop", "sgd")


def test_weights_from_the_environment(monkeypatch):
    for value, expected in (("imagenet", "imagenet"), ("none", None), ("/w/r50.h5", "/w/r50.h5")):
        monkeypatch.setenv("PAINTING_WEIGHTS", value)
        reload_settings()
        assert RunConfig(data_dir="/d").weights == expected
    monkeypatch.undo()
    reload_settings()


@pytest.mark.parametrize("field,value,message", [
    ("warn_reject_rate", 0.5, "warn_reject_rate=0.5 is above max_reject_rate=0.1"),
    ("warn_split_paintings", 5, "warn_split_paintings=5 is below min_split_paintings=10"),
    ("warn_drift", 0.9, "warn_drift=0.9 is above max_drift=0.5"),
])
def test_gate_warning_levels_come_before_failing_ones(field, value, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(data_dir="/d", **{field: value})


@pytest.mark.parametrize("field,value,message", [
    ("optimizer", "lion", "optimizer='lion': input should be 'adam', 'adamw', 'rmsprop' or 'sgd'; use one of adam, adamw, rmsprop, sgd"),
    ("backbone", "vgg16", "backbone='vgg16': .*use one of resnet50, resnet101, resnet18"),
    ("fine_tune", "half", "fine_tune='half': .*use one of all, frozen, last_k, two_phase"),
    ("targets", ("style",), "list artist once"),
    ("targets", ("artist", "mood"), r"targets\[1\]='mood': .*use a list of artist, style, genre"),
    ("loss_weights", {"genre": 1.0}, "not among targets"),
    ("label_smoothing", 0.7, r"label_smoothing=0.7: .*use a number in \[0, 0.5\]"),
    ("gradient_accumulation_steps", 0, r"gradient_accumulation_steps=0: .*use an integer in \[1, 1024\]"),
    ("fine_tune_stages", 6, r"fine_tune_stages=6: .*an integer in \[1, 5\]"),
    ("epochs", 0, r"epochs=0: input should be greater than or equal to 1; use an integer in \[1, 1000\]"),
    ("image_size", 8, r"image_size=8: .*\[32, 1024\]"),
    ("n_artists", 1, r"n_artists=1: .*\[2, 1000\]"),
    ("batch_size", "many", "batch_size='many': input should be a valid integer"),
    ("learning_rate", "abc", r"learning_rate='abc': input should be a valid number.*use a number in \(0, 10\]"),
    ("learning_rate", True, r"learning_rate=True: is a boolean, not a number; use a number in \(0, 10\]"),
    ("epochs", 2.5, "epochs=2.5: input should be a valid integer"),
    ("wandb", 1, "wandb=1: is not a boolean; use true or false"),
    ("online_augment", "yes", "online_augment='yes': is not a boolean"),
    ("augment", ("hflip", "twirl"), r"augment\[1\]='twirl': .*use a list of hflip, vflip, hvflip"),
    ("augment", ("rot400",), r"augment transform 'rot400' is not a rotation in \(0, 360\)"),
    ("loss_weights", "{bad", "loss_weights='{bad': is not a JSON object"),
    ("strategy", "list", "strategy='list' needs artists"),
])
def test_invalid_values_name_the_field_value_and_what_is_allowed(field, value, message):
    kw = {"targets": ["artist", "style"]} if field == "loss_weights" and value == "{bad" else {}
    with pytest.raises(ConfigError, match=message) as err:
        RunConfig(data_dir="/d", **{**kw, field: value})
    assert "\n" not in str(err.value)


def test_numbers_and_booleans_as_text_are_read_like_the_cli_passes_them():
    cfg = RunConfig(data_dir="/d", batch_size="16", learning_rate="3e-4", wandb="false", optimizers="adam,sgd")
    assert (cfg.batch_size, cfg.learning_rate, cfg.wandb, cfg.optimizers) == (16, 3e-4, False, ("adam", "sgd"))


def test_fractions_must_leave_training_data():
    with pytest.raises(ConfigError, match="leaves too little to train on"):
        RunConfig(data_dir="/d", val_fraction=0.4, test_fraction=0.45)


def test_unknown_keys_are_refused_with_a_suggestion_and_the_known_ones():
    with pytest.raises(ConfigError) as err:
        RunConfig.from_params({"data_dir": "/d", "epoch": 3})
    assert "unknown config key 'epoch' (did you mean 'epochs'?)" in str(err.value)
    assert "optimizer" in str(err.value)


def test_from_params_roundtrip_replace_and_fingerprint():
    cfg = RunConfig.from_params({"data_dir": "/d", "epochs": 2, "fine_tune": "all", "augment": "hflip,vflip",
                                 "weights": None})
    assert cfg.augment == ("hflip", "vflip")
    again = RunConfig.from_params(cfg.to_dict())
    assert again == cfg and again.fingerprint() == cfg.fingerprint()
    assert RunConfig(data_dir="/d", epochs=3, fine_tune="all").fingerprint() != cfg.fingerprint()
    assert cfg.replace(optimizer="sgd").optimizer == "sgd"
    with pytest.raises(ConfigError, match="optimizer='lion'"):
        cfg.replace(optimizer="lion")


def test_missing_data_dir():
    with pytest.raises(ConfigError, match="data_dir"):
        RunConfig.from_params({"epochs": 2})


def test_multitask_and_fine_tune_fields_from_params():
    cfg = RunConfig.from_params({"data_dir": "/d", "targets": "artist,style", "loss_weights": {"style": 0.5},
                                 "fine_tune": "two_phase", "epochs": 4, "head_epochs": 2})
    assert cfg.targets == ("artist", "style") and cfg.loss_weight("style") == 0.5 and cfg.loss_weight("artist") == 1.0
    assert RunConfig.from_params(cfg.to_dict()) == cfg


def test_every_field_has_a_title_description_and_section():
    for name, f in RunConfig.model_fields.items():
        assert f.title and f.description, name
        assert (f.json_schema_extra or {}).get("section") in {s.value for s in Section}, name


# --- one schema, three outputs ------------------------------------------------------------------
class ExtendedConfig(RunConfig):
    """A copy of the schema with one more field, as a developer would add it."""

    warmup_epochs: int = Field(2, ge=0, le=50, title="Warm-up epochs",
                               description="Epochs of linear learning-rate warm-up.",
                               json_schema_extra={"section": Section.OPTIMISATION.value})


def test_a_new_schema_field_appears_in_params_cli_and_readme_table():
    from painting_ml.cli.flags import add_config_flags, config_from_args
    from painting_ml.orchestration.params import run_params

    params = run_params({"data_dir": "/d"}, model=ExtendedConfig)
    assert params["warmup_epochs"].value == 2
    assert params["warmup_epochs"].schema["section"] == "Optimisation"
    assert params["warmup_epochs"].schema["minimum"] == 0 and params["warmup_epochs"].schema["maximum"] == 50

    parser = argparse.ArgumentParser()
    add_config_flags(parser, model=ExtendedConfig)
    assert "--warmup-epochs" in parser.format_help() and "Warm-up epochs" in parser.format_help()
    cfg = config_from_args(parser.parse_args(["--data-dir", "/d", "--warmup-epochs", "4"]), model=ExtendedConfig)
    assert cfg.warmup_epochs == 4
    with pytest.raises(ConfigError, match=r"warmup_epochs='99': .*an integer in \[0, 50\]"):
        config_from_args(parser.parse_args(["--data-dir", "/d", "--warmup-epochs", "99"]), model=ExtendedConfig)

    assert "| Optimisation | `warmup_epochs` | `2` | an integer in [0, 50] |" in markdown_table(ExtendedConfig)


def test_readme_configuration_table_is_the_generated_one():
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- config-table:start -->\n(.*?)\n<!-- config-table:end -->", text, re.S)
    assert m, "README.md lost its config-table markers"
    assert m.group(1).strip() == markdown_table().strip(), \
        "README's configuration table is stale: paste the output of `painting-ml config --markdown`"


def test_the_real_params_cover_every_field_in_sections():
    from painting_ml.orchestration.params import run_params

    params = run_params({"data_dir": "/d"})
    assert list(params) == [n for names in sections().values() for n in names]
    assert set(params) == set(RunConfig.model_fields)
    assert RunConfig.from_params({k: p.value for k, p in params.items()}) == RunConfig(data_dir="/d")


def test_the_cli_starts_from_the_deployment_defaults_file(tmp_path, monkeypatch):
    from painting_ml.cli.flags import add_config_flags, config_from_args
    from painting_ml.core.settings import reload_settings

    defaults = tmp_path / "defaults.json"
    defaults.write_text('{"epochs": 12, "optimizers": ["sgd"], "weights": null}')
    monkeypatch.setenv("PAINTING_RUN_DEFAULTS", str(defaults))
    reload_settings()
    try:
        parser = argparse.ArgumentParser()
        add_config_flags(parser)
        cfg = config_from_args(parser.parse_args(["--data-dir", "/d"]))
        assert (cfg.epochs, cfg.optimizers, cfg.weights) == (12, ("sgd",), None)
        assert config_from_args(parser.parse_args(["--data-dir", "/d", "--epochs", "9"])).epochs == 9
    finally:
        monkeypatch.delenv("PAINTING_RUN_DEFAULTS")
        reload_settings()
