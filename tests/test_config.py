"""The config schema: validation messages, round trips, and the three things generated from it
(the DAG's Params, the CLI flags, the docs' configuration reference)."""

import argparse
import os
from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from painting_ml.core.config import CPU_DEMO, RunConfig, Section, markdown_table, sections
from painting_ml.core.errors import ConfigError
from painting_ml.core.settings import RESNET50_NOTOP_FILE, Settings, available_cores, env_name, reload_settings

pytestmark = pytest.mark.unit

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
    ("optimizer", "lion", "optimizer='lion': input should be 'adam', 'adamw', 'rmsprop' or 'sgd'; "
                          "use one of adam, adamw, rmsprop, sgd"),
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


def test_the_docs_configuration_reference_is_generated_from_the_schema():
    """docs/reference/config.md holds a marker the mkdocs hook replaces with the schema's tables."""
    import importlib.util

    assert "<!-- reference:config -->" in (REPO / "docs" / "reference" / "config.md").read_text()
    spec = importlib.util.spec_from_file_location("docs_reference", REPO / "docs" / "hooks" / "reference.py")
    assert spec and spec.loader
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    rendered = hook.config_reference()
    from painting_ml.core.config import RunConfig

    missing = [name for name in RunConfig.model_fields if f"`{name}`" not in rendered]
    assert missing == []


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


# --- the deployment's settings: environment variables, read once -------------------------------
@pytest.fixture
def environ(monkeypatch, tmp_path):
    """An environment without painting_ml's variables (home: ``tmp_path``); settings read afresh after."""
    for name in list(os.environ):
        if name.startswith("PAINTING_") or name == "WANDB_MODE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("PAINTING_HOME", str(tmp_path))
    yield monkeypatch
    monkeypatch.undo()
    reload_settings()


def test_settings_defaults_derive_from_the_home(environ, tmp_path):
    s = reload_settings()
    assert (s.home, s.db_url, s.wandb_mode, s.default_data_dir) == (tmp_path, None, "offline",
                                                                    tmp_path / "data" / "demo")
    assert s.weights == str(tmp_path / "weights" / RESNET50_NOTOP_FILE)
    assert s.artifacts_url == (tmp_path / "artifacts").as_uri() and s.workers == available_cores()
    assert (s.train_timeout_minutes, s.keep_runs, s.alert_email, s.run_defaults_file) == (360, 10, (), None)
    environ.setenv("PAINTING_WEIGHTS_DIR", "/weights")
    environ.setenv("PAINTING_ALERT_EMAIL", " ops@example.org,, ml@example.org ")
    s = reload_settings()
    assert s.weights == f"/weights/{RESNET50_NOTOP_FILE}" and s.alert_email == ("ops@example.org", "ml@example.org")


def test_an_empty_variable_means_unset(environ, tmp_path):
    for name in ("PAINTING_DATA_DIR", "PAINTING_WEIGHTS", "PAINTING_WORKERS", "PAINTING_KEEP_RUNS", "WANDB_MODE",
                 "PAINTING_RETRAIN_CRON", "PAINTING_TRAIN_TIMEOUT_MINUTES", "PAINTING_ALERT_FROM"):
        environ.setenv(name, "")  # what compose's ${X:-} passes
    s = reload_settings()
    assert (s.default_data_dir, s.keep_runs, s.wandb_mode, s.retrain_cron) == (tmp_path / "data" / "demo", 10,
                                                                               "offline", "0 3 * * 1")
    assert (s.train_timeout_minutes, s.alert_from) == (360, None) and s.weights.endswith(RESNET50_NOTOP_FILE)


@pytest.mark.parametrize("var,value,message", [
    ("PAINTING_WORKERS", "0", "PAINTING_WORKERS='0' must be at least 1 (unset: the CPU cores"),
    ("PAINTING_WORKERS", "many", "PAINTING_WORKERS='many' is not a whole number; use 1 or more"),
    ("PAINTING_KEEP_RUNS", "-1", "PAINTING_KEEP_RUNS='-1' must be at least 0"),
    ("PAINTING_INGEST_QUIET_SECONDS", "soon", "PAINTING_INGEST_QUIET_SECONDS='soon' is not a number of seconds"),
    ("PAINTING_INGEST_QUIET_SECONDS", "-5", "PAINTING_INGEST_QUIET_SECONDS='-5' is negative; use 0 or more seconds"),
    ("PAINTING_TRAIN_TIMEOUT_MINUTES", "1.5", "PAINTING_TRAIN_TIMEOUT_MINUTES='1.5' is not a whole number; use 1 to "
                                              "10080 minutes"),
    ("PAINTING_TRAIN_TIMEOUT_MINUTES", "20000", "PAINTING_TRAIN_TIMEOUT_MINUTES='20000' must be at most 10080"),
    ("WANDB_MODE", "Online", "WANDB_MODE='Online' is not valid; use offline (default), online or disabled"),
    ("PAINTING_PROGRESS", "maybe", "PAINTING_PROGRESS='maybe' is not a boolean; use 1 (on) or 0 (off)"),
])
def test_a_bad_variable_is_one_line_naming_it_its_value_and_the_fix(environ, var, value, message):
    environ.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        reload_settings()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert str(err.value).count("=") == 1  # derived defaults do not pile on errors of their own


def test_weights_none_means_random_init_and_settings_are_frozen(environ):
    environ.setenv("PAINTING_WEIGHTS", "None")
    s = reload_settings()
    assert s.weights is None
    with pytest.raises(ValidationError):
        s.weights = "imagenet"  # type: ignore[misc]


def test_every_setting_documents_itself_and_names_its_variable():
    names = {name: env_name(name) for name in Settings.model_fields}
    assert names["default_data_dir"] == "PAINTING_DATA_DIR" and names["wandb_mode"] == "WANDB_MODE"
    assert names["run_defaults_file"] == "PAINTING_RUN_DEFAULTS" and names["keep_runs"] == "PAINTING_KEEP_RUNS"
    assert len(set(names.values())) == len(names)
    for name, info in Settings.model_fields.items():
        assert info.description, name
        if info.default_factory is not None:  # a derived default: the docs show it in words
            assert "default_doc" in (info.json_schema_extra or {}), name
