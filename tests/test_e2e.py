"""End to end: the real painting_retrain DAG, run by real Airflow (`airflow dags test`), against the
real PostgreSQL, on a tiny generated set; then the metric rows and mosaic files are checked."""

import json

import psycopg
import pytest
from conftest import stored

from painting_ml.core.config import CPU_DEMO
from painting_ml.core.settings import reload_settings
from painting_ml.orchestration.local_airflow import airflow_env, run_airflow

pytestmark = pytest.mark.e2e


def test_dag_runs_end_to_end(clean_db, tiny_data, tmp_path):
    settings = reload_settings()
    # The deployed DAG's trainings and predictions, traced as in production.
    env = {**airflow_env(settings, clean_db, airflow_home=tmp_path / "airflow"), "PAINTING_RUN_EAGERLY": "0"}
    run_airflow(["db", "migrate"], env, capture=True, timeout=300)
    conf = {**CPU_DEMO, "data_dir": str(tiny_data), "n_artists": 3, "epochs": 1, "image_size": 32, "batch_size": 16,
            "backbone": "resnet18", "optimizers": ["adam", "sgd"],
            "min_macro_f1": 0.0}  # one epoch at 32 px: the production floor (tests/test_registry.py) would refuse it
    proc = run_airflow(["dags", "test", "painting_retrain", "-c", json.dumps(conf)], env, capture=True, timeout=900)
    assert "state=success" in proc.stdout + proc.stderr

    with psycopg.connect(clean_db) as conn:
        runs = conn.execute("SELECT id, status, test_accuracy, run_dir, dataset_version_id, config ->> 'optimizer' "
                            "FROM runs ORDER BY id").fetchall()
        version = runs[0][4]
        artists = conn.execute("SELECT artists FROM dataset_versions WHERE id = %s", (version,)).fetchone()[0]
        n_test = conn.execute("SELECT count(*) FROM dataset_items WHERE version_id = %s AND split = 'test'",
                              (version,)).fetchone()[0]
        n_aug = conn.execute("SELECT count(*) FROM augmented_images WHERE version_id = %s", (version,)).fetchone()[0]
        rejects = conn.execute("SELECT count(*) FROM rejects").fetchone()[0]
        decision = conn.execute("SELECT run_id, promoted, reasons FROM promotions").fetchall()
        champion = conn.execute("SELECT run_id FROM champion").fetchone()[0]
        per_run = {}
        for run_id, *_ in runs:
            per_run[run_id] = {
                "metrics": conn.execute("SELECT artist, support, precision, recall, f1, accuracy FROM artist_metrics "
                                        "WHERE run_id = %s ORDER BY artist", (run_id,)).fetchall(),
                "n_pred": conn.execute("SELECT count(*) FROM predictions WHERE run_id = %s", (run_id,)).fetchone()[0],
                "epochs": conn.execute("SELECT epoch, loss, learning_rate FROM epochs WHERE run_id = %s",
                                       (run_id,)).fetchall(),
                "artifacts": conn.execute("SELECT kind, path, bytes FROM artifacts WHERE run_id = %s",
                                          (run_id,)).fetchall(),
            }

    assert sorted((r[1], r[5]) for r in runs) == [("evaluated", "adam"), ("evaluated", "sgd")]  # one mapped run each
    assert len({r[4] for r in runs}) == 1 and len(artists) == 3 and n_aug > 0 and rejects == 4
    for run_id, _status, acc, run_dir, _, _ in runs:
        got = per_run[run_id]
        assert [m[0] for m in got["metrics"]] == sorted(artists) and 0.0 <= acc <= 1.0
        assert sum(m[1] for m in got["metrics"]) == n_test == got["n_pred"] > 0
        assert len(got["epochs"]) == 1 and got["epochs"][0][1] > 0
        # the kept model, without the checkpoints training needed
        assert stored(f"{run_dir}/model.keras").is_file() and not stored(f"{run_dir}/best.keras").exists()
        assert not stored(f"{run_dir}/backup").exists()
        assert [k for k, _, _ in got["artifacts"]].count("comparison") == 1
    # compare picked one, the gate decided on it (the first model becomes champion); every run has its
    # mosaics and report, and the best one's report shows the decision
    assert len(decision) == 1 and decision[0][1] is True and champion == decision[0][0]
    for run_id, got in per_run.items():
        kinds = [k for k, _, _ in got["artifacts"]]
        assert kinds.count("mosaic_predicted") == kinds.count("mosaic_real") == 3 and kinds.count("report") == 1
        for _, path, size in got["artifacts"]:
            assert stored(path).is_file() and stored(path).stat().st_size == size
        report = next(stored(p) for k, p, _ in got["artifacts"] if k == "report").read_text()
        assert "comparison.png" in report
        assert ("promoted to champion" in report) == (run_id == champion)
