"""The DAG files import cleanly, cheaply (no TensorFlow, no database) and wire what we expect."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent


def _airflow_python(code: str, tmp_path) -> dict:
    # The product's default schedules, not the one conftest sets for the tests that run a scheduler.
    env = {k: v for k, v in os.environ.items() if k != "PAINTING_RETRAIN_CRON"}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
               # An unreachable database proves that parsing needs none.
               PAINTING_DB_URL="postgresql://nobody@127.0.0.1:1/none")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dagbag_has_no_import_errors(tmp_path):
    result = _airflow_python(
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "d = bag.dags['painting_retrain']\n"
        "i = bag.dags['painting_ingest']\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},\n"
        "  'dags': sorted(bag.dags), 'tasks': sorted(t.task_id for t in d.tasks),\n"
        "  'upstream': {t.task_id: sorted(t.upstream_task_ids) for t in d.tasks},\n"
        "  'queues': {t.task_id: t.queue for t in d.tasks}, 'pools': {t.task_id: t.pool for t in d.tasks},\n"
        "  'retries': {t.task_id: t.retries for t in d.tasks},\n"
        "  'no_retry': sorted(t.task_id for t in [*d.tasks, *i.tasks] if t.retry_policy is None),\n"
        "  'doc': d.doc_md,\n"
        "  'types': {k: d.params.get_param(k).schema.get('type') for k in d.params},\n"
        "  'descriptions': {k: d.params.get_param(k).description for k in d.params},\n"
        "  'timeouts': {t.task_id: t.execution_timeout.total_seconds() for t in [*d.tasks, *i.tasks]\n"
        "               if t.execution_timeout},\n"
        "  'dagrun_timeout': d.dagrun_timeout.total_seconds(), 'ingest_tasks': sorted(t.task_id for t in i.tasks),\n"
        "  'ingest_upstream': {t.task_id: sorted(t.upstream_task_ids) for t in i.tasks},\n"
        "  'mapped': sorted(t.task_id for t in d.tasks if 'MappedOperator' in type(t).__name__),\n"
        "  'schedule': type(d.timetable).__name__, 'timetable': repr(d.timetable.timetable),\n"
        "  'retrain_assets': [a.name for a in d.timetable.asset_condition.objects],\n"
        "  'ingest_outlets': [o.name for t in i.tasks for o in t.outlets], 'ingest_schedule': repr(i.timetable),\n"
        "  'retrain_outlets': {t.task_id: [o.name for o in t.outlets] for t in d.tasks if t.outlets},\n"
        "  'params': sorted(d.params.keys()), 'defaults': {k: d.params[k] for k in d.params},\n"
        "  'typed': [k for k in d.params if not d.params.get_param(k).schema.get('type')],\n"
        "  'sections': {k: d.params.get_param(k).schema.get('section') for k in d.params},\n"
        "  'titles': all(d.params.get_param(k).schema.get('title') and d.params.get_param(k).description\n"
        "                for k in d.params)}))\n",
        tmp_path,
    )
    assert result["errors"] == {}
    assert {"painting_retrain", "painting_ingest"} <= set(result["dags"])
    assert result["tasks"] == sorted(["check_config", "migrate", "sweep_lost_runs", "ingest", "select_artists", "split",
                                      "validate", "augment", "sweep", "train", "evaluate", "compare", "promote",
                                      "publish_champion", "mosaics", "report"])
    up = result["upstream"]
    assert up["check_config"] == [] and up["migrate"] == ["check_config"]
    # Trainings whose process vanished are marked lost by the next run, before it ingests.
    assert up["sweep_lost_runs"] == ["migrate"] and up["ingest"] == ["sweep_lost_runs"]
    # The data-quality gate sits between split and everything that spends time on the data.
    assert up["validate"] == ["split"] and up["augment"] == ["validate"]
    assert up["train"] == ["augment", "sweep"] and up["evaluate"] == ["train"] and up["compare"] == ["evaluate"]
    assert up["promote"] == ["compare"] and up["mosaics"] == ["evaluate", "promote"] and up["report"] == ["mosaics"]
    assert up["publish_champion"] == ["promote"]
    assert result["mapped"] == ["evaluate", "mosaics", "report", "train"]
    assert result["queues"]["train"] == "gpu" and result["pools"]["train"] == "gpu"
    assert {q for t, q in result["queues"].items() if t != "train"} == {"default"}
    assert all(r >= 1 for t, r in result["retries"].items() if t != "check_config")
    assert result["retries"]["check_config"] == 0  # a missing weights file fails the run at once
    assert result["no_retry"] == []  # every task: a config or data-quality error fails without retrying
    assert "**The form's defaults here:** the production recipe (no PAINTING_RUN_DEFAULTS file)." in result["doc"]
    # Every task of both DAGs has an execution_timeout; train's is PAINTING_TRAIN_TIMEOUT_MINUTES (360).
    assert set(result["timeouts"]) == set(result["tasks"]) | set(result["ingest_tasks"])
    assert result["timeouts"]["train"] == 360 * 60 and result["timeouts"]["check_config"] <= 300
    assert result["dagrun_timeout"] >= 3 * 360 * 60
    assert result["ingest_tasks"] == ["check_settled", "ingest_changes", "migrate"]
    assert result["ingest_upstream"]["migrate"] == ["check_settled"]
    assert result["schedule"] == "AssetOrTimeSchedule" and result["retrain_assets"] == ["painting_catalog"]
    assert "0 3 * * 1" in result["timetable"]
    assert result["retrain_outlets"] == {"publish_champion": ["painting_champion"]}  # only a new champion
    assert result["ingest_outlets"] == ["painting_catalog"] and "'0 * * * *'" in result["ingest_schedule"]
    assert {"data_dir", "n_artists", "epochs", "image_size", "batch_size", "optimizers", "strategy", "artists",
            "augment", "online_augment", "backbone", "weights", "targets", "fine_tune",
            "max_recall_drop"} <= set(result["params"])
    assert result["titles"] is True
    assert result["typed"] == []  # every Param has a JSON-schema type (ranges and enums where they apply)
    # Every Param is a RunConfig key, and the form's defaults make a valid config.
    from painting_ml.core.config import RunConfig

    # Every field is in the form but the single-run optimizer: this DAG trains one run per `optimizers` entry.
    assert set(result["params"]) == set(RunConfig.known_keys()) - {"optimizer"}
    # Only fields an empty value is valid for may be left empty; the form marks the others required.
    optional = {k for k, t in result["types"].items() if isinstance(t, list) and "null" in t}
    assert optional == {"artists", "augment", "loss_weights", "weights"}
    # Each description ends with the field's limits: a number's range, a list's allowed values.
    texts = result["descriptions"]
    assert texts["image_size"].endswith("Takes an integer in [32, 1024].")
    assert texts["optimizers"].endswith("Takes a list of adam, adamw, rmsprop, sgd.")
    assert texts["artists"].endswith("Takes a list of strings; may be left empty.")
    assert texts["learning_rate"].endswith("Takes a number in (0, 10].")
    assert set(result["sections"].values()) == {"Data", "Data-quality gate", "Augmentation", "Model", "Optimisation",
                                                 "Evaluation and promotion", "Artifacts and tracking"}
    cfg = RunConfig.from_params(result["defaults"])
    assert cfg.targets == ("artist",) and cfg.backbone == "resnet50" and cfg.optimizers == ("adam",)


def test_invalid_params_are_refused_at_trigger(tmp_path):
    result = _airflow_python(
        "import json, copy\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"d = DagBag(dag_folder={str(REPO / 'dags')!r}).dags['painting_retrain']\n"
        "out = {}\n"
        "for k, v in [('optimizers', ['lion']), ('optimizers', []), ('epochs', 0), ('augment', ['twirl']),\n"
        "             ('n_artists', 'ten'), ('epochs', None), ('data_dir', None), ('optimizers', None),\n"
        "             ('targets', ['artist', 'mood']), ('backbone', 'vgg16'), ('fine_tune', 'some'),\n"
        "             ('label_smoothing', 0.9), ('loss_weights', {'style': -1})]:\n"
        "    p = copy.deepcopy(d.params)\n"
        "    try:\n"
        "        p.update({k: v}); p.validate(); out[f'{k}={v}'] = 'accepted'\n"
        "    except Exception as e:\n"
        "        out[f'{k}={v}'] = type(e).__name__\n"
        "print(json.dumps(out))\n",
        tmp_path,
    )
    assert set(result.values()) == {"ParamValidationError"}, result


def test_optional_params_accept_empty_and_mean_empty(tmp_path):
    """An optional field sent empty (null) by the form is valid and means its empty value."""
    result = _airflow_python(
        "import json, copy\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "from painting_ml.orchestration.params import config_from_params\n"
        f"d = DagBag(dag_folder={str(REPO / 'dags')!r}).dags['painting_retrain']\n"
        "p = copy.deepcopy(d.params)\n"
        "p.update({'artists': None, 'augment': None, 'loss_weights': None, 'weights': None}); p.validate()\n"
        "cfg = config_from_params(p.dump())\n"
        "print(json.dumps({'artists': cfg.artists, 'augment': cfg.augment, 'loss_weights': cfg.loss_weights,\n"
        "                  'weights': cfg.weights, 'optimizers': cfg.optimizers}))\n",
        tmp_path,
    )
    assert result == {"artists": [], "augment": [], "loss_weights": {}, "weights": None, "optimizers": ["adam"]}


def test_importing_dag_file_does_not_import_tensorflow(tmp_path):
    result = _airflow_python(
        "import json, sys, runpy\n"
        f"runpy.run_path({str(REPO / 'dags' / 'painting_retrain.py')!r})\n"
        "print(json.dumps({'heavy': sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'psycopg', 'pandas')"
        " if m in sys.modules)}))\n",
        tmp_path,
    )
    assert result["heavy"] == []


def test_gc_dag_wires_one_task_with_typed_params(tmp_path):
    result = _airflow_python(
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "d = bag.dags['painting_gc']\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},\n"
        "  'tasks': sorted(t.task_id for t in d.tasks), 'timetable': repr(d.timetable),\n"
        "  'retries': [t.retries for t in d.tasks],\n"
        "  'timeouts': [t.execution_timeout.total_seconds() for t in d.tasks if t.execution_timeout],\n"
        "  'defaults': {k: d.params[k] for k in d.params},\n"
        "  'types': {k: d.params.get_param(k).schema.get('type') for k in d.params},\n"
        "  'titles': all(d.params.get_param(k).schema.get('title') and d.params.get_param(k).description\n"
        "                for k in d.params),\n"
        "  'max_active_runs': d.max_active_runs,\n"
        "  'heavy': sorted(m for m in ('tensorflow', 'keras', 'psycopg') if m in sys.modules)}))\n",
        tmp_path,
    )
    assert result["errors"] == {}
    assert result["tasks"] == ["collect_garbage"]
    assert "@daily" in result["timetable"] or "0 0 * * *" in result["timetable"]
    assert result["retries"] == [2] and len(result["timeouts"]) == 1 and result["max_active_runs"] == 1
    assert result["defaults"] == {"dry_run": False, "keep_runs": 10}  # PAINTING_KEEP_RUNS' default
    assert result["types"] == {"dry_run": "boolean", "keep_runs": "integer"} and result["titles"] is True
    assert result["heavy"] == []


def test_attribute_dag_order(tmp_path):
    result = _airflow_python(
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "d = bag.dags['painting_attribute']\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},\n"
        "  'upstream': {t.task_id: sorted(t.upstream_task_ids) for t in d.tasks}}))\n",
        tmp_path,
    )
    assert result["errors"] == {}
    # finish waits for every shard scored (the mapped score) and takes only the champion's run id.
    assert result["upstream"] == {"migrate": [], "export_champion": ["migrate"], "plan": ["export_champion"],
                                  "score": ["plan"], "finish": ["export_champion", "score"]}


def test_audit_dag_wiring_params_and_schedule(tmp_path):
    result = _airflow_python(
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "d = bag.dags['painting_audit']\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},\n"
        "  'upstream': {t.task_id: sorted(t.upstream_task_ids) for t in d.tasks},\n"
        "  'mapped': sorted(t.task_id for t in d.tasks if 'MappedOperator' in type(t).__name__),\n"
        "  'queues': {t.task_id: t.queue for t in d.tasks}, 'pools': {t.task_id: t.pool for t in d.tasks},\n"
        "  'timeouts': {t.task_id: t.execution_timeout.total_seconds() for t in d.tasks if t.execution_timeout},\n"
        "  'no_retry': sorted(t.task_id for t in d.tasks if t.retry_policy is None),\n"
        "  'assets': [a.name for a in d.timetable.asset_condition.objects],\n"
        "  'params': sorted(d.params.keys()), 'defaults': {k: d.params[k] for k in ('folds', 'audit_recipe')},\n"
        "  'schemas': {k: d.params.get_param(k).schema for k in ('folds', 'audit_recipe')},\n"
        "  'titles': all(d.params.get_param(k).schema.get('title') and d.params.get_param(k).description\n"
        "                for k in d.params),\n"
        "  'max_active_runs': d.max_active_runs,\n"
        "  'heavy': sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'psycopg', 'cleanlab')\n"
        "                  if m in sys.modules)}))\n",
        tmp_path,
    )
    assert result["errors"] == {}
    assert result["upstream"] == {
        "check_config": [], "migrate": ["check_config"], "ingest": ["migrate"], "select_artists": ["ingest"],
        "plan": ["select_artists"], "augment": ["plan"], "train_fold": ["augment", "plan"],
        "predict_fold": ["plan", "train_fold"], "rank": ["plan", "predict_fold"], "evidence": ["rank"],
        "report": ["evidence"]}
    assert result["mapped"] == ["predict_fold", "train_fold"]
    assert result["queues"]["train_fold"] == "gpu" and result["pools"]["train_fold"] == "gpu"
    assert {q for t, q in result["queues"].items() if t != "train_fold"} == {"default"}
    assert result["timeouts"]["train_fold"] == 360 * 60 and set(result["timeouts"]) == set(result["upstream"])
    assert result["no_retry"] == []
    assert result["assets"] == ["painting_catalog"]  # after a catalog change (and by hand)
    from painting_ml.core.config import RunConfig

    # The run's Params (one optimizer: the folds train one recipe) plus the audit's own two.
    assert set(result["params"]) == (set(RunConfig.known_keys()) - {"optimizers"}) | {"folds", "audit_recipe"}
    assert result["defaults"] == {"folds": 5, "audit_recipe": "head"}  # the production recipe has weights
    assert result["schemas"]["folds"]["minimum"] == 2 and result["schemas"]["audit_recipe"]["enum"] == ["head", "full"]
    assert result["titles"] is True and result["max_active_runs"] == 1
    assert result["heavy"] == []  # parsing imports no TensorFlow, database driver or cleanlab
