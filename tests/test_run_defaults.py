"""The scheduled run's defaults: the production recipe, overridden per deployment by a defaults
file (PAINTING_RUN_DEFAULTS) read when the DAG is parsed; a bad file is an import error naming the key."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from painting_ml.core.config import read_defaults_file
from painting_ml.core.errors import ConfigError

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent

# One interpreter parses the DAG folder once per scenario (env -> settings -> DagBag).
PROBE = """
import json, os, sys
from airflow.dag_processing.dagbag import DagBag
from painting_ml.core.settings import reload_settings
out = {}
for name, env in json.loads(sys.argv[1]).items():
    for key in ("PAINTING_RUN_DEFAULTS", "PAINTING_TRAIN_TIMEOUT_MINUTES"):
        os.environ.pop(key, None)
    os.environ.update(env)
    reload_settings()
    bag = DagBag(dag_folder=sys.argv[2])
    d = bag.dags.get("painting_retrain")
    out[name] = {
        "errors": {os.path.basename(k): str(v) for k, v in bag.import_errors.items()},
        "defaults": {k: d.params[k] for k in d.params} if d else None,
        "ingest_data_dir": bag.dags["painting_ingest"].params["data_dir"] if "painting_ingest" in bag.dags else None,
        "train_timeout": d.get_task("train").execution_timeout.total_seconds() if d else None,
        "dagrun_timeout": d.dagrun_timeout.total_seconds() if d else None,
    }
print(json.dumps(out))
"""


def parse_dags(tmp_path, scenarios: dict[str, dict[str, str]]) -> dict:
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"), PAINTING_HOME=str(tmp_path / "home"),
               PAINTING_DB_URL="postgresql://nobody@127.0.0.1:1/none")  # parsing must need no database
    for k in ("PAINTING_WEIGHTS", "PAINTING_WEIGHTS_DIR", "PAINTING_DATA_DIR", "PAINTING_RUN_DEFAULTS",
              "PAINTING_TRAIN_TIMEOUT_MINUTES"):
        env.pop(k, None)
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(scenarios), str(REPO / "dags")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_recipe_defaults_and_a_defaults_file_and_bad_files(tmp_path):
    good = tmp_path / "defaults.yaml"
    good.write_text("# this deployment: longer training, a second optimizer, its own data and weights\n"
                    "epochs: 40\noptimizers: adam,sgd\ndata_dir: /srv/paintings\nweights: imagenet\n"
                    "min_split_paintings: 20\nwarn_split_paintings: 40\n")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"epochs": 40, "epoch": 40}))
    invalid = tmp_path / "invalid.yml"
    invalid.write_text("image_size: 8\n")
    # The training timeout is fixed when Airflow parses the DAG: a deployment setting, not a run option.
    moved = tmp_path / "moved.yaml"
    moved.write_text("epochs: 40\ntrain_timeout_minutes: 600\n")
    got = parse_dags(tmp_path, {"none": {}, "good": {"PAINTING_RUN_DEFAULTS": str(good),
                                                     "PAINTING_TRAIN_TIMEOUT_MINUTES": "600"},
                                "unknown": {"PAINTING_RUN_DEFAULTS": str(unknown)},
                                "invalid": {"PAINTING_RUN_DEFAULTS": str(invalid)},
                                "moved": {"PAINTING_RUN_DEFAULTS": str(moved)}})

    # No file, no conf: the production recipe.
    recipe = got["none"]
    assert recipe["errors"] == {}
    d = recipe["defaults"]
    assert d["weights"] == str(tmp_path / "home" / "weights" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert (d["backbone"], d["image_size"], d["fine_tune"], d["fine_tune_stages"], d["head_epochs"]) == \
        ("resnet50", 224, "two_phase", 2, 5)
    assert (d["optimizers"], d["dropout"], d["l2"], d["gradient_accumulation_steps"]) == (["adam"], 0.4, 0.01, 4)
    assert "optimizer" not in d  # the DAG sweeps `optimizers`; the single-run field is not in its form
    assert (d["epochs"], d["early_stopping_patience"], d["lr_patience"], d["fine_tune_lr_factor"]) == (30, 5, 2, 0.1)
    assert (d["max_reject_rate"], d["min_split_paintings"], d["max_drift"]) == (0.1, 10, 0.5)
    assert d["data_dir"] == str(tmp_path / "home" / "data" / "demo") and recipe["train_timeout"] == 360 * 60

    # The file overrides field by field; the rest stays the recipe; the form shows the result.
    mine = got["good"]
    assert mine["errors"] == {}
    d = mine["defaults"]
    assert (d["epochs"], d["optimizers"], d["data_dir"], d["weights"]) == \
        (40, ["adam", "sgd"], "/srv/paintings", "imagenet")
    assert (d["min_split_paintings"], d["image_size"], d["fine_tune"]) == (20, 224, "two_phase")
    assert mine["train_timeout"] == 600 * 60 and mine["ingest_data_dir"] == "/srv/paintings"
    assert mine["dagrun_timeout"] > recipe["dagrun_timeout"] >= 3 * 360 * 60  # derived from the train timeout

    # A bad file: both DAGs fail to import, and the error names the file and the key.
    for name, needle in (("unknown", "unknown config key 'epoch' (did you mean 'epochs'?)"),
                         ("invalid", "image_size=8: input should be greater than or equal to 32"),
                         ("moved", "train_timeout_minutes is not a run option but the deployment's environment "
                                   "variable PAINTING_TRAIN_TIMEOUT_MINUTES")):
        errors = got[name]["errors"]
        assert {"painting_retrain.py", "painting_ingest.py"} <= set(errors), errors  # and every DAG with a form
        assert needle in errors["painting_retrain.py"] and "PAINTING_RUN_DEFAULTS=" in errors["painting_retrain.py"]
        assert got[name]["defaults"] is None


@pytest.mark.parametrize("name,text,message", [
    ("d.json", '{"epochs": 40, "augment": "hflip,rot90"}', None),
    ("d.yaml", "", None),
    ("d.yaml", "- epochs\n", "holds a list; write a mapping of config keys"),
    ("d.yaml", "epochs: [40\n", "not valid YAML"),
    ("d.json", "{epochs: 40}", "not valid JSON"),
    ("d.toml", "epochs = 40", r"name the file \*.json, \*.yaml or \*.yml"),
    ("d.yaml", "epochs: 3\n", "fine_tune='two_phase' needs 1 <= head_epochs < epochs"),
    ("d.yaml", "optimizers: [adam, lion]\n", r"optimizers\[1\]='lion'"),
    ("d.yaml", "train_timeout_minutes: 600\n", "environment variable PAINTING_TRAIN_TIMEOUT_MINUTES .*set "
                                               "PAINTING_TRAIN_TIMEOUT_MINUTES=600 and remove the key"),
])
def test_read_defaults_file(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    if message is None:
        values = read_defaults_file(path)
        assert values == ({"epochs": 40, "augment": ["hflip", "rot90"]} if text else {})
        return
    with pytest.raises(ConfigError, match=message) as err:
        read_defaults_file(path)
    assert str(err.value).startswith(f"PAINTING_RUN_DEFAULTS={path}: ") and "\n" not in str(err.value)


def test_a_missing_defaults_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="PAINTING_RUN_DEFAULTS=.*: no such file"):
        read_defaults_file(tmp_path / "nope.yaml")
