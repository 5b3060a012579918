"""Integration: painting_retrain on a real CeleryExecutor cluster (PostgreSQL metadata DB, Redis
broker, api-server, scheduler, dag-processor, workers for queues `default` and `gpu`), triggered
through the REST API as the UI does. Skipped only when Redis or PostgreSQL is unreachable."""

from __future__ import annotations

import re
import shutil

import psycopg
import pytest

from cluster import Cluster, reachable

from painting_ml.core.config import CPU_DEMO

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def watched(tmp_path_factory, tiny_data):
    """A data folder of its own for painting_ingest (PAINTING_DATA_DIR of the cluster)."""
    folder = tmp_path_factory.mktemp("watched") / "data"
    shutil.copytree(tiny_data, folder)
    return folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, db_url, server_url, painting_home, watched):
    """One cluster for the tests of this module, on an emptied painting database."""
    if not reachable("127.0.0.1", 6379):
        pytest.skip("Redis is not reachable at 127.0.0.1:6379 (start it: redis-server --daemonize yes)")
    from painting_ml.core import db

    meta = db.create_database(server_url, "pm_airflow")
    with psycopg.connect(db_url, autocommit=True) as conn:
        from conftest import TABLES

        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    c = Cluster(tmp_path_factory.mktemp("cluster") / "airflow", meta, db_url, painting_home, data_dir=watched)
    try:
        c.up()
        yield c
    finally:
        c.down()
        db.drop_database(server_url, meta)


def test_two_retrains_at_once_on_celery_with_training_on_the_gpu_queue(cluster, db_url, tiny_data):
    base = {**CPU_DEMO, "data_dir": str(tiny_data), "n_artists": 3, "epochs": 1, "image_size": 32, "batch_size": 16,
            "backbone": "resnet18", "head_units": 32}
    # Two runs at once with different Params, triggered through the REST API as the UI does.
    run_ids = [cluster.trigger("painting_retrain", {**base, "optimizers": ["adam"], "seed": 1}),
               cluster.trigger("painting_retrain", {**base, "optimizers": ["sgd"], "seed": 2})]
    states = [cluster.wait_run("painting_retrain", r, timeout=900) for r in run_ids]
    assert states == ["success", "success"], cluster.logs()

    with psycopg.connect(cluster.metadata_url) as conn:
        tis = conn.execute("SELECT run_id, task_id, queue, pool, state FROM task_instance "
                           "WHERE dag_id = 'painting_retrain'").fetchall()
        celery = conn.execute("SELECT worker, queue, args FROM celery_taskmeta WHERE status = 'SUCCESS'").fetchall()
    for run_id in run_ids:
        by_task = {t: (q, p, s) for r, t, q, p, s in tis if r == run_id}
        assert by_task["train"] == ("gpu", "gpu", "success")
        # publish_champion is skipped for a run the gate did not promote (no champion Asset event).
        assert all(s == "success" for t, (_, _, s) in by_task.items() if t != "publish_champion")
        assert by_task["publish_champion"][2] in ("success", "skipped") and len(by_task) == 15
        assert {q for t, (q, _, _) in by_task.items() if t != "train"} == {"default"}
    # Celery's own record: which worker and queue really executed each task.
    ran = {}
    for worker, queue, args in celery:
        text = bytes(args).decode("utf-8", "replace") if isinstance(args, (bytes, memoryview)) else str(args)
        found = re.search(r'task_id\\?"?\s*[:=]\s*\\?["\']?(\w+)', text)
        ran.setdefault(found.group(1) if found else text[:300], set()).add((worker.split("@")[0], queue))
    assert ran.get("train") == {("gpu", "gpu")}, ran
    assert ran.get("evaluate") == {("default", "default")}, ran

    with psycopg.connect(db_url) as conn:
        runs = conn.execute("SELECT id, status, run_dir, config ->> 'optimizer', run_key FROM runs ORDER BY id").fetchall()
        epochs = conn.execute("SELECT run_id, count(*) FROM epochs GROUP BY 1").fetchall()
        decisions = conn.execute("SELECT count(*) FROM promotions").fetchone()[0]
        champions = conn.execute("SELECT count(*) FROM champion").fetchone()[0]
    # Each dag run wrote its own run row, folder and epochs; neither touched the other's.
    assert sorted(r[3] for r in runs) == ["adam", "sgd"] and {r[1] for r in runs} == {"evaluated"}
    assert len({r[2] for r in runs}) == 2 and sorted(n for _, n in epochs) == [1, 1]
    assert {r[4].rsplit(":", 1)[0].split(":", 1)[1] for r in runs} == set(run_ids)  # <dag>:<run id>:<fingerprint>
    assert decisions == 2 and champions == 1


def test_ingest_publishes_the_catalog_asset_only_on_change(cluster, watched):
    cluster.unpause("painting_retrain")  # listens to the Asset
    first = cluster.trigger("painting_ingest", {})
    assert cluster.wait_run("painting_ingest", first, timeout=300) == "success", cluster.logs()
    # Unpausing may also have started the latest hourly run; whichever came first ingested the new
    # folder and the other found nothing changed.
    runs = cluster.wait_for(lambda: (lambda rs: rs if all(r["state"] in ("success", "failed") for r in rs) else None)(
        cluster.runs("painting_ingest")), 300, "every painting_ingest run to finish")
    states = sorted(cluster.task_states("painting_ingest", r["dag_run_id"])["ingest_changes"] for r in runs)
    assert states == ["skipped"] * (len(runs) - 1) + ["success"]
    # The Asset event makes the scheduler start painting_retrain on its own.
    triggered = cluster.wait_for(
        lambda: [r for r in cluster.runs("painting_retrain") if r["run_type"] == "asset_triggered"], 120,
        "an asset-triggered painting_retrain run")
    assert len(triggered) == 1
    again = cluster.trigger("painting_ingest", {})  # nothing changed since
    assert cluster.wait_run("painting_ingest", again, timeout=300) == "success"
    assert cluster.task_states("painting_ingest", again) == {"check_settled": "success", "migrate": "success",
                                                       "ingest_changes": "skipped"}
    with psycopg.connect(cluster.metadata_url) as conn:
        events = conn.execute("SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                              "WHERE a.name = 'painting_catalog'").fetchone()[0]
        champions = conn.execute("SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                                 "WHERE a.name = 'painting_champion'").fetchone()[0]
    assert events == 1  # only the ingest that changed something published
    # The concurrent retrains of the first test: the one the gate promoted published the champion Asset.
    assert champions >= 1
