"""Integration: painting_retrain on a real CeleryExecutor cluster (PostgreSQL metadata DB, Redis
broker, api-server, scheduler, dag-processor, workers for queues `default` and `gpu`), triggered
through the REST API as the UI does. Skipped only when Redis or PostgreSQL is unreachable."""

from __future__ import annotations

import re

import psycopg
import pytest

from cluster import Cluster, reachable

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(tmp_path, clean_db, server_url, painting_home):
    if not reachable("127.0.0.1", 6379):
        pytest.skip("Redis is not reachable at 127.0.0.1:6379 (start it: redis-server --daemonize yes)")
    from painting_ml import db

    info = psycopg.conninfo.conninfo_to_dict(server_url)
    if not info.get("host", "").startswith("127.") and info.get("host") != "localhost":
        if not reachable("127.0.0.1", 5432):
            pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432 (CeleryExecutor needs it for metadata)")
    meta = db.create_database(server_url, "pm_airflow")
    c = Cluster(tmp_path / "airflow", meta, clean_db, painting_home)
    try:
        c.up()
        yield c
    finally:
        c.down()
        db.drop_database(server_url, meta)


def test_retrain_runs_on_celery_with_training_on_the_gpu_queue(cluster, clean_db, tiny_data):
    conf = {"data_dir": str(tiny_data), "n_artists": 3, "epochs": 1, "image_size": 32, "batch_size": 16,
            "backbone": "resnet18", "optimizers": ["adam"], "head_units": 32}
    run_id = cluster.trigger("painting_retrain", conf)
    state = cluster.wait_run("painting_retrain", run_id, timeout=900)
    assert state == "success", cluster.logs()

    with psycopg.connect(cluster.metadata_url) as conn:
        tis = conn.execute("SELECT task_id, queue, pool, state FROM task_instance WHERE dag_id = 'painting_retrain' "
                           "AND run_id = %s", (run_id,)).fetchall()
        celery = conn.execute("SELECT worker, queue, args FROM celery_taskmeta WHERE status = 'SUCCESS'").fetchall()
    by_task = {t: (q, p, s) for t, q, p, s in tis}
    assert by_task["train"] == ("gpu", "gpu", "success")
    assert all(s == "success" for _, _, s in by_task.values()) and len(by_task) == 11
    assert {q for t, (q, _, _) in by_task.items() if t != "train"} == {"default"}
    # Celery's own record: which worker and queue really executed each task.
    ran = {}
    for worker, queue, args in celery:
        text = bytes(args).decode("utf-8", "replace") if isinstance(args, (bytes, memoryview)) else str(args)
        found = re.search(r'task_id\\?"?\s*[:=]\s*\\?["\']?(\w+)', text)
        ran.setdefault(found.group(1) if found else text[:300], set()).add((worker.split("@")[0], queue))
    assert ran.get("train") == {("gpu", "gpu")}, ran
    assert ran.get("evaluate") == {("default", "default")}, ran

    with psycopg.connect(clean_db) as conn:
        runs = conn.execute("SELECT id, status FROM runs").fetchall()
        champion = conn.execute("SELECT run_id FROM champion").fetchone()
        n_metrics = conn.execute("SELECT count(*) FROM artist_metrics").fetchone()[0]
    assert [s for _, s in runs] == ["evaluated"] and champion[0] == runs[0][0] and n_metrics == 3
