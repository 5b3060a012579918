"""End to end: the real painting_retrain DAG, run by real Airflow (`airflow dags test`), against the
real PostgreSQL, on a tiny generated set; then the metric rows and mosaic files are checked."""

import json
from pathlib import Path

import psycopg
import pytest

from painting_ml.airflow_env import airflow_env, run_airflow
from painting_ml.settings import reload_settings

pytestmark = pytest.mark.e2e


def test_dag_runs_end_to_end(clean_db, tiny_data, tmp_path):
    settings = reload_settings()
    env = airflow_env(settings, clean_db, airflow_home=tmp_path / "airflow")
    run_airflow(["db", "migrate"], env, capture=True, timeout=300)
    conf = {"data_dir": str(tiny_data), "n_artists": 3, "epochs": 1, "image_size": 32, "batch_size": 16}
    proc = run_airflow(["dags", "test", "painting_retrain", "-c", json.dumps(conf)], env, capture=True, timeout=900)
    assert "state=success" in proc.stdout + proc.stderr

    with psycopg.connect(clean_db) as conn:
        run_id, status, acc, run_dir, version = conn.execute(
            "SELECT id, status, test_accuracy, run_dir, dataset_version_id FROM runs").fetchone()
        artists = conn.execute("SELECT artists FROM dataset_versions WHERE id = %s", (version,)).fetchone()[0]
        metrics = conn.execute("SELECT artist, support, precision, recall, f1, accuracy FROM artist_metrics "
                               "WHERE run_id = %s ORDER BY artist", (run_id,)).fetchall()
        n_test = conn.execute("SELECT count(*) FROM dataset_items WHERE version_id = %s AND split = 'test'",
                              (version,)).fetchone()[0]
        n_pred = conn.execute("SELECT count(*) FROM predictions WHERE run_id = %s", (run_id,)).fetchone()[0]
        epochs = conn.execute("SELECT epoch, loss, learning_rate FROM epochs WHERE run_id = %s", (run_id,)).fetchall()
        n_aug = conn.execute("SELECT count(*) FROM augmented_images WHERE version_id = %s", (version,)).fetchone()[0]
        mosaic_rows = conn.execute("SELECT path, bytes FROM artifacts WHERE run_id = %s AND kind = 'mosaic'",
                                   (run_id,)).fetchall()
        rejects = conn.execute("SELECT count(*) FROM rejects").fetchone()[0]

    assert status == "evaluated" and 0.0 <= acc <= 1.0
    assert [m[0] for m in metrics] == sorted(artists) and len(artists) == 3
    assert sum(m[1] for m in metrics) == n_test == n_pred > 0
    assert all(0.0 <= v <= 1.0 for m in metrics for v in m[2:])
    assert len(epochs) == 1 and epochs[0][0] == 1 and epochs[0][1] > 0 and epochs[0][2] == pytest.approx(1e-3)
    assert n_aug > 0 and rejects == 4
    assert len(mosaic_rows) == 3
    for path, size in mosaic_rows:
        assert Path(path).is_file() and Path(path).stat().st_size == size and path.startswith(run_dir)
    assert (Path(run_dir) / "best.keras").is_file()
