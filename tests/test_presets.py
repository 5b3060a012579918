"""Named run presets one flag away: `painting-ml run --preset cpu`, listed by `painting-ml config --presets`,
and the trigger form's defaults of `painting-ml airflow` (tests/test_local_server.py)."""

import argparse
import json

import pytest

from painting_ml.cli import main
from painting_ml.cli.demo import DEMO_MODEL
from painting_ml.cli.flags import add_config_flags, config_from_args
from painting_ml.core.config import CPU_DEMO, PRESETS, RunConfig

pytestmark = pytest.mark.unit


def _config(*argv: str) -> RunConfig:
    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    return config_from_args(parser.parse_args(["--data-dir", "/d", *argv]))


def test_the_cpu_preset_is_the_cpu_demo_with_the_demo_model():
    assert PRESETS["cpu"] == {**CPU_DEMO, **DEMO_MODEL}  # what `make demo` trains
    cfg = RunConfig(data_dir="/d", **PRESETS["cpu"])  # valid as a whole
    assert (cfg.weights, cfg.gradient_accumulation_steps, cfg.fine_tune) == (None, 1, "all")


def test_run_preset_cpu_trains_without_the_recipe_s_accumulation():
    recipe, cpu = _config(), _config("--preset", "cpu")
    assert recipe.gradient_accumulation_steps == 4 and recipe.backbone == "resnet50"
    assert cpu == RunConfig(data_dir="/d", **PRESETS["cpu"])
    # The other flags override the preset; --set overrides both.
    assert _config("--preset", "cpu", "--epochs", "7").epochs == 7
    assert _config("--preset", "cpu", "--set", "image_size=96").image_size == 96


def test_an_unknown_preset_is_one_line(capsys):
    assert main(["run", "--data-dir", "/d", "--preset", "gpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'gpu' (choose from 'cpu')" in err


def test_config_lists_the_presets(capsys):
    assert main(["config", "--presets"]) == 0
    assert json.loads(capsys.readouterr().out) == PRESETS
