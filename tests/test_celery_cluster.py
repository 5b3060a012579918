"""Integration: painting_retrain on a real multi-host CeleryExecutor cluster, triggered through the
REST API as the UI does. PostgreSQL metadata DB, Redis broker, api-server, scheduler,
dag-processor, workers for queues `default` and `gpu`; each component has folders of its own (its
PAINTING_HOME, AIRFLOW_HOME, HOME; another's folder is off limits, see tests/cluster.py) and the
artifact store is an S3 API server (moto's standalone server) on 127.0.0.1. The data folders live
only under the default worker's home. Skipped only when Redis or PostgreSQL is unreachable."""

from __future__ import annotations

import re
import shutil

import psycopg
import pytest
from cluster import COMPONENTS, Cluster, painting_home_of

from painting_ml.core.config import CPU_DEMO
from painting_ml.orchestration.local_airflow import reachable

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, db_url, server_url, tiny_data):
    """One cluster for the tests of this module, on an emptied painting database. ``cluster.tiny``
    (the retrains' data_dir) and ``cluster.watched`` (PAINTING_DATA_DIR, painting_ingest's folder)
    are copies of the generated set under the default worker's home, the only host with data."""
    if not reachable("127.0.0.1", 6379):
        pytest.skip("Redis is not reachable at 127.0.0.1:6379 (start it: redis-server --daemonize yes)")
    from painting_ml.core import db

    meta = db.create_database(server_url, "pm_airflow")
    with psycopg.connect(db_url, autocommit=True) as conn:
        from conftest import TABLES

        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    root = tmp_path_factory.mktemp("cluster")
    data = painting_home_of(root, "worker-default") / "data"
    c = Cluster(root, meta, db_url, data_dir=data / "watched")
    c.tiny, c.watched = data / "tiny", data / "watched"
    shutil.copytree(tiny_data, c.tiny)
    shutil.copytree(tiny_data, c.watched)
    try:
        c.up()
        yield c
    finally:
        c.down()
        db.drop_database(server_url, meta)


def test_two_retrains_at_once_on_celery_with_training_on_the_gpu_queue(cluster, db_url):
    base = {**CPU_DEMO, "data_dir": str(cluster.tiny), "n_artists": 3, "epochs": 1, "image_size": 32, "batch_size": 16,
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
        assert by_task["publish_champion"][2] in ("success", "skipped")
        assert set(by_task) == {"check_config", "migrate", "sweep_lost_runs", "ingest", "select_artists", "split",
                                "validate", "augment", "sweep", "train", "evaluate", "compare", "promote",
                                "publish_champion", "mosaics", "report"}  # every task of the DAG ran
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
        runs = conn.execute("SELECT id, status, run_dir, config ->> 'optimizer', run_key FROM runs "
                            "ORDER BY id").fetchall()
        epochs = conn.execute("SELECT run_id, count(*) FROM epochs GROUP BY 1").fetchall()
        decisions = conn.execute("SELECT count(*) FROM promotions").fetchone()[0]
        champions = conn.execute("SELECT count(*) FROM champion").fetchone()[0]
    # Each dag run wrote its own run row, folder and epochs; neither touched the other's.
    assert sorted(r[3] for r in runs) == ["adam", "sgd"] and {r[1] for r in runs} == {"evaluated"}
    assert len({r[2] for r in runs}) == 2 and sorted(n for _, n in epochs) == [1, 1]
    assert {r[4].rsplit(":", 1)[0].split(":", 1)[1] for r in runs} == set(run_ids)  # <dag>:<run id>:<fingerprint>
    assert decisions == 2 and champions == 1
    assert_multi_host_store(cluster, db_url)


def assert_multi_host_store(cluster, db_url):
    """The hosts shared files only through the S3 store: the database holds keys, the bucket holds
    each run's model, report and mosaics, and no host wrote a local store or touched another's folder."""
    with psycopg.connect(db_url) as conn:
        runs = conn.execute("SELECT run_dir, model_path FROM runs ORDER BY id").fetchall()
        artifacts = conn.execute("SELECT run_id, kind, path FROM artifacts").fetchall()
        augmented = [r[0] for r in conn.execute("SELECT path FROM augmented_images")]
        # the copies of the paintings these runs' dataset versions hold (not rows another test left)
        cached = [r[0] for r in conn.execute(
            "SELECT DISTINCT c.key FROM image_cache c JOIN paintings p ON p.data_root = c.data_root "
            "AND p.rel_path = c.rel_path JOIN dataset_items i ON i.data_root = p.data_root AND i.filename = p.filename "
            "WHERE i.version_id IN (SELECT dataset_version_id FROM runs)")]
    keys = [k for d, m in runs for k in (d, m)] + [a[2] for a in artifacts] + augmented + cached
    assert keys and not [k for k in keys if not k or k.startswith("/")], "host paths in the database"
    objects = cluster.objects()
    assert objects, "the S3 bucket is empty"
    assert not [k for k in [a[2] for a in artifacts] + augmented + cached if k not in objects]
    for run_dir, model_path in runs:
        files = {k[len(run_dir) + 1:] for k in objects if k.startswith(f"{run_dir}/")}
        assert model_path == f"{run_dir}/model.keras" and "model.keras" in files, files
        # A finished run keeps model.keras only: no checkpoint, backup or optimizer state left.
        assert not [f for f in files if f.endswith("best.keras") or f.startswith(("backup/", "cache/"))
                    or ".tmp" in f or f.endswith(".weights.h5")], files
        mosaics = {f for f in files if f.startswith("mosaics/") and f.endswith(".png")}
        assert mosaics and "report.html" in files, files
        # The report (rendered on the default worker from the store) shows the mosaics, by relative
        # links to objects that are in the bucket beside it.
        html = cluster.read_object(f"{run_dir}/report.html").decode()
        srcs = re.findall(r'<img src="([^"]+)"', html)
        shown = {s for s in srcs if s.startswith("mosaics/") and s.endswith(".png")}
        assert shown and shown <= mosaics, (shown, mosaics)
        assert not [s for s in srcs if s not in files], srcs
    # Nothing was written to a local store, and no host opened another host's folder.
    for component in COMPONENTS:
        home = cluster.painting_home(component)
        assert not (home / "artifacts").exists(), f"{component} wrote to a local artifact store"
        log = cluster.foreign_access_log(component)
        assert not log.exists(), f"{component} reached another host's folder:\n{log.read_text()[:4000]}"
        assert cluster.guarded(component), f"{component} ran without the guard"
    # The gpu worker trained from image copies it downloaded from the store: its scratch holds the
    # derived copies (and the augmented ones), and it has no data folder.
    gpu = cluster.painting_home("worker-gpu")
    local = {p.relative_to(gpu / "scratch").as_posix() for p in (gpu / "scratch").rglob("*") if p.is_file()}
    fetched = {k for k in local if k.startswith("derived/")}
    assert fetched and fetched <= set(cached), fetched - set(cached)
    assert {k for k in local if k.startswith("augmented/")} <= set(augmented)
    assert not (gpu / "data").exists()


def test_ingest_publishes_the_catalog_asset_only_on_change(cluster):
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
