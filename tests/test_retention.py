"""Retention (gc): which runs and image copies keep their files, on the real database and a local
store; the CLI's report; lineage in `painting-ml runs --json`; one real tiny training pruned."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from conftest import empty_catalog, tiny_run_config

pytestmark = pytest.mark.db

DAY = 86400
OLD = time.time() - 3 * DAY


@pytest.fixture
def gc_home(clean_db, tmp_path, monkeypatch):
    """A PAINTING_HOME of its own (store, reduced copies) over the emptied test database."""
    from painting_ml.core import settings

    home = tmp_path / "home"
    monkeypatch.setenv("PAINTING_HOME", str(home))
    monkeypatch.delenv("PAINTING_ARTIFACTS_URL", raising=False)
    monkeypatch.delenv("PAINTING_KEEP_RUNS", raising=False)
    settings.reload_settings()
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("TRUNCATE image_cache, champion_changes, dataset_items, paintings, dataset_versions, runs "
                     "RESTART IDENTITY CASCADE")
    yield home
    monkeypatch.undo()
    settings.reload_settings()


def _file(store, key: str, size: int, old: bool = True) -> str:
    path = store.local_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    if old:
        os.utime(path, (OLD, OLD))
    return key


def _scene(db_url, home: Path) -> dict:
    """Seven runs over four dataset versions, with run files, augmented and derived copies,
    reduced copies and orphans (sizes in bytes chosen so every kind's total is recognisable).

    r1 champion (v1) · r2, r4 plain old runs (v2: no other run) · r3 a promotion candidate measured
    against r1 (v1) · r5, r6 the newest (v3) · r7 still running, started first (v1) · v4 is new, unused.
    """
    from painting_ml.core.store import get_store

    store = get_store()
    with psycopg.connect(db_url, autocommit=True) as conn:
        for v, age in ((1, 30), (2, 30), (3, 30), (4, 0)):
            conn.execute("INSERT INTO dataset_versions (id, content_hash, config, artists, artist_counts, "
                         "data_root, created_at) VALUES (%s, %s, '{}', '[]', '{}', '/data', "
                         "now() - make_interval(days => %s))", (v, f"h{v}", age))
        for name, versions in (("p1.jpg", (1,)), ("p2.jpg", (2,)), ("both.jpg", (1, 2))):
            conn.execute("INSERT INTO paintings (filename, artist, data_root, rel_path, width, height, mode, "
                         "source_csv, reduced_path) VALUES (%s, 'a', '/data', %s, 9, 9, 'RGB', 'x.csv', %s)",
                         (name, f"train/{name}", str(home / "reduced" / "r" / name) if name == "p2.jpg" else None))
            for v in versions:
                conn.execute("INSERT INTO dataset_items (version_id, data_root, filename, artist, label, split) "
                             "VALUES (%s, '/data', %s, 'a', 0, 'train')", (v, name))
        runs = {1: (1, 9, "evaluated"), 2: (2, 8, "evaluated"), 3: (1, 7, "evaluated"), 4: (2, 6, "failed"),
                5: (3, 5, "evaluated"), 6: (3, 4, "evaluated"), 7: (1, 40, "running")}
        for rid, (v, days, status) in runs.items():
            run_dir = f"runs/run_{rid}_abcd"
            conn.execute("INSERT INTO runs (id, run_key, dataset_version_id, config, status, run_dir, model_path, "
                         "macro_f1, started_at, finished_at) VALUES (%s, %s, %s, '{\"optimizer\": \"adam\"}', %s, "
                         "%s, %s, 0.5, now() - make_interval(days => %s), "
                         "CASE WHEN %s = 'running' THEN NULL ELSE now() - make_interval(days => %s) END)",
                         (rid, f"k{rid}", v, status, run_dir, f"{run_dir}/model.keras", days, status, days))
            for name, size in (("model.keras", 1000), ("classes.json", 10), ("plots/curves.png", 100)):
                key = _file(store, f"{run_dir}/{name}", size)
                conn.execute("INSERT INTO artifacts (run_id, kind, path, bytes, sha256) VALUES (%s, %s, %s, %s, 'x')",
                             (rid, name.split(".")[0].split("/")[0], key, size))
        conn.execute("SELECT setval('runs_id_seq', 7)")
        conn.execute("INSERT INTO champion (run_id) VALUES (1)")
        conn.execute("INSERT INTO promotions (run_id, dataset_version_id, champion_run_id, promoted, reasons) "
                     "VALUES (3, 1, 1, false, '[]')")
        aug = {"v2_only": (2,), "shared": (1, 2), "v1": (1,), "v4": (4,)}
        for name, versions in aug.items():
            key = _file(store, f"augmented/by_source/{name[:2]}/{name}.jpg", 50)
            for v in versions:
                conn.execute("INSERT INTO augmented_images (version_id, source_filename, transform, path) "
                             "VALUES (%s, %s, 'hflip', %s)", (v, f"{name}.jpg", key))
        for name in ("p1.jpg", "p2.jpg", "both.jpg"):
            key = _file(store, f"derived/v1-64/{name[:2]}/{name}", 20)
            conn.execute("INSERT INTO image_cache (data_root, rel_path, size_bytes, mtime_ns, sha256, long_side, key, "
                         "made_at) VALUES ('/data', %s, 1, 1, 's', 64, %s, now() - interval '3 days')",
                         (f"train/{name}", key))
    _file(store, "augmented/by_source/ff/orphan.jpg", 7)                  # no row, old: removed
    _file(store, "augmented/by_source/ff/young.jpg", 7, old=False)        # no row yet, young: kept
    _file(store, "runs/run_99_dead/model.keras", 3)                       # a run the database forgot
    _file(store, "exports/elsewhere.bin", 5)                              # not a folder gc manages
    reduced = home / "reduced" / "r"
    reduced.mkdir(parents=True)
    for name, old in (("p2.jpg", True), ("unused.jpg", True), ("fresh.jpg", False)):
        (reduced / name).write_bytes(b"j" * 11)
        if old:
            os.utime(reduced / name, (OLD, OLD))
    return {"store": store, "reduced": reduced}


def test_dry_run_reports_and_deletes_nothing(gc_home, clean_db):
    from painting_ml.results.retention import collect_garbage

    scene = _scene(clean_db, gc_home)
    before = scene["store"].list()
    out = collect_garbage(keep_runs=2, dry_run=True)
    assert out["dry_run"] is True
    assert out["runs_pruned"] == [2, 4]
    assert out["kept_runs"] == [1, 3, 5, 6, 7]
    assert out["live_versions"] == [1, 3, 4]
    assert out["by_kind"] == {"runs": {"files": 6, "bytes": 2220}, "augmented": {"files": 1, "bytes": 50},
                              "derived": {"files": 1, "bytes": 20}, "reduced": {"files": 1, "bytes": 11},
                              "orphans": {"files": 2, "bytes": 10}}
    assert (out["files"], out["bytes"]) == (11, 2311)
    assert scene["store"].list() == before
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM runs WHERE files_pruned_at IS NOT NULL").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM artifacts").fetchone()[0] == 21
        assert conn.execute("SELECT count(*) FROM augmented_images").fetchone()[0] == 5


def test_gc_keeps_what_the_policy_names_and_removes_the_rest(gc_home, clean_db):
    from painting_ml.results.retention import collect_garbage

    scene = _scene(clean_db, gc_home)
    store = scene["store"]
    out = collect_garbage(keep_runs=2)
    assert out["dry_run"] is False and out["runs_pruned"] == [2, 4] and (out["files"], out["bytes"]) == (11, 2311)
    keys = set(store.list())
    for rid in (1, 3, 5, 6, 7):  # champion, promotion candidate, the two newest, the running one
        assert f"runs/run_{rid}_abcd/model.keras" in keys
    assert not any(k.startswith(("runs/run_2_", "runs/run_4_", "runs/run_99_")) for k in keys)
    assert not store.local_path("runs/run_2_abcd").exists()
    assert {k for k in keys if k.startswith("augmented/")} == {
        "augmented/by_source/sh/shared.jpg", "augmented/by_source/v1/v1.jpg", "augmented/by_source/v4/v4.jpg",
        "augmented/by_source/ff/young.jpg"}
    assert {k for k in keys if k.startswith("derived/")} == {"derived/v1-64/p1/p1.jpg", "derived/v1-64/bo/both.jpg"}
    assert "exports/elsewhere.bin" in keys
    assert sorted(p.name for p in scene["reduced"].iterdir()) == ["fresh.jpg", "p2.jpg"]  # p2 named by the catalog
    with psycopg.connect(clean_db) as conn:
        pruned = conn.execute("SELECT id FROM runs WHERE files_pruned_at IS NOT NULL ORDER BY id").fetchall()
        assert [r[0] for r in pruned] == [2, 4]
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 7  # rows stay
        artifact_runs = conn.execute("SELECT DISTINCT run_id FROM artifacts ORDER BY 1").fetchall()
        assert artifact_runs == [(1,), (3,), (5,), (6,), (7,)]
        assert conn.execute("SELECT DISTINCT version_id FROM augmented_images ORDER BY 1").fetchall() == [(1,), (4,)]
        assert conn.execute("SELECT rel_path FROM image_cache ORDER BY 1").fetchall() == [("train/both.jpg",),
                                                                                        ("train/p1.jpg",)]
        assert conn.execute("SELECT count(*) FROM dataset_versions").fetchone()[0] == 4
    again = collect_garbage(keep_runs=2)  # idempotent: nothing left to remove
    assert (again["files"], again["runs_pruned"]) == (0, [])


def test_keep_runs_zero_still_keeps_champion_promoted_and_running(gc_home, clean_db):
    from painting_ml.core.errors import ConfigError
    from painting_ml.results.retention import collect_garbage

    _scene(clean_db, gc_home)
    out = collect_garbage(keep_runs=0, dry_run=True)
    assert out["kept_runs"] == [1, 3, 7] and out["runs_pruned"] == [2, 4, 5, 6]
    assert out["live_versions"] == [1, 4]  # v3's runs are pruned and it is 30 days old
    out = collect_garbage(keep_runs=0, dry_run=True, grace=timedelta(days=5.5))
    assert out["kept_runs"] == [1, 3, 5, 6, 7]  # finished less than grace ago: kept whatever keep_runs says
    with pytest.raises(ConfigError, match="keep_runs=-1"):
        collect_garbage(keep_runs=-1)


def _audits(db_url) -> None:
    """Three audits of /data, their fold runs newer than every retrain run and 'trained' for good
    (fold runs are never evaluated): audit 1 ranked then superseded (runs 8, 9), audit 2 the latest
    ranked (10, 11), audit 3 still training (12); fold version 5."""
    from painting_ml.core.store import get_store

    store = get_store()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO dataset_versions (id, content_hash, config, artists, artist_counts, data_root, "
                     "created_at) VALUES (5, 'h5', '{\"audit\": {\"fold\": 0}}', '[]', '{}', '/data', "
                     "now() - interval '30 days')")
        for audit, status, runs in ((1, "ranked", (8, 9)), (2, "ranked", (10, 11)), (3, "running", (12,))):
            conn.execute("INSERT INTO audits (id, audit_key, dataset_version_id, data_root, folds, recipe, config, "
                         "status) VALUES (%s, %s, 1, '/data', 2, 'head', '{}', %s)", (audit, f"a{audit}", status))
            for fold, rid in enumerate(runs):
                run_dir = f"runs/run_{rid}_abcd"
                conn.execute("INSERT INTO runs (id, run_key, dataset_version_id, config, status, run_dir, model_path, "
                             "started_at, finished_at) VALUES (%s, %s, 5, '{}', 'trained', %s, %s, "
                             "now() - interval '2 days', now() - interval '2 days')",
                             (rid, f"audit:a{audit}:fold{fold}", run_dir, f"{run_dir}/model.keras"))
                _file(store, f"{run_dir}/model.keras", 1000)
                conn.execute("INSERT INTO audit_folds (audit_id, fold, dataset_version_id, run_id) "
                             "VALUES (%s, %s, 5, %s)", (audit, fold, rid))
        conn.execute("SELECT setval('runs_id_seq', 12)")


def test_audit_fold_runs_kept_while_their_audit_is_current_and_never_count_as_newest(gc_home, clean_db):
    from painting_ml.results.retention import collect_garbage

    scene = _scene(clean_db, gc_home)
    _audits(clean_db)
    out = collect_garbage(keep_runs=2)
    assert out["runs_pruned"] == [2, 4, 8, 9]  # the superseded audit's folds go; 5 and 6 stay the newest
    assert out["kept_runs"] == [1, 3, 5, 6, 7, 10, 11, 12]
    keys = set(scene["store"].list())
    assert {f"runs/run_{r}_abcd/model.keras" for r in (10, 11, 12)} <= keys
    assert not any(k.startswith(("runs/run_8_", "runs/run_9_")) for k in keys)
    assert 5 in out["live_versions"]  # audit 3's fold version is in use
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("UPDATE audits SET status = 'ranked' WHERE id = 3")  # audit 3 supersedes audit 2
    out = collect_garbage(keep_runs=2)
    assert out["runs_pruned"] == [10, 11] and out["kept_runs"] == [1, 3, 5, 6, 7, 12]


def test_a_run_promoted_or_retried_after_the_plan_keeps_its_files(gc_home, clean_db, monkeypatch):
    from painting_ml.results import retention

    scene = _scene(clean_db, gc_home)
    plan = retention.db.fetch_dicts

    def promote_run_2_after_planning(conn, query, params=None):
        rows = plan(conn, query, params)
        if "reasons" in query:  # the plan was just read: a promotion and a retry slip in
            with psycopg.connect(clean_db, autocommit=True) as other:
                other.execute("INSERT INTO promotions (run_id, dataset_version_id, champion_run_id, promoted, "
                              "reasons) VALUES (2, 2, 1, false, '[]')")
                other.execute("UPDATE runs SET status = 'running' WHERE id = 4")
        return rows

    monkeypatch.setattr(retention.db, "fetch_dicts", promote_run_2_after_planning)
    out = retention.collect_garbage(keep_runs=2)
    assert out["runs_pruned"] == []
    assert scene["store"].exists("runs/run_2_abcd/model.keras") and scene["store"].exists("runs/run_4_abcd/model.keras")
    assert out["live_versions"] == [1, 2, 3, 4]  # so v2's image copies stay for the retried run 4
    assert scene["store"].exists("augmented/by_source/v2/v2_only.jpg")


def test_cli_gc_dry_run_prints_one_line_and_json(gc_home, clean_db, capsys):
    from painting_ml.cli import main

    _scene(clean_db, gc_home)
    assert main(["gc", "--dry-run", "--keep-runs", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("would free 11 files, 0.0 MB (runs 6, augmented 1, derived 1, reduced 1, orphans 2)")
    assert line.endswith("runs pruned: 2, 4; runs kept: 5")
    assert main(["gc", "--dry-run", "--keep-runs", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["runs_pruned"] == [2, 4, 5, 6] and out["dry_run"] is True
    assert main(["gc", "--keep-runs", "-1"]) == 2
    assert "--keep-runs" in capsys.readouterr().err
    assert gc_home.joinpath("artifacts/runs/run_2_abcd/model.keras").is_file()


def test_run_lineage_view_and_runs_json(gc_home, clean_db, capsys):
    from painting_ml.cli import main

    _scene(clean_db, gc_home)
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("UPDATE runs SET code_version = '1.2.0', code_commit = 'abc123', data_fingerprint = 'fp', "
                     "wandb_id = 'w-1' WHERE id = 6")
        conn.execute("UPDATE artifacts SET sha256 = 'feed' WHERE run_id = 6 AND kind = 'model'")
        row = conn.execute("SELECT model_key, model_sha256, dataset_hash, files_pruned_at FROM run_lineage "
                           "WHERE run_id = 6").fetchone()
    assert row == ("runs/run_6_abcd/model.keras", "feed", "h3", None)
    assert main(["runs", "--json", "--limit", "2"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in runs] == [7, 6]
    six = runs[1]
    assert {k: six[k] for k in ("code_version", "code_commit", "data_fingerprint", "dataset_version_id", "model_key",
                                "model_sha256", "wandb_id", "files_pruned_at")} == {
        "code_version": "1.2.0", "code_commit": "abc123", "data_fingerprint": "fp", "dataset_version_id": 3,
        "model_key": "runs/run_6_abcd/model.keras", "model_sha256": "feed", "wandb_id": "w-1",
        "files_pruned_at": None}
    assert six["config"] == {"optimizer": "adam"} and six["macro_f1"] == 0.5
    assert main(["runs"]) == 0 and "code_commit" not in capsys.readouterr().out  # the table stays as it was


@pytest.mark.train
def test_a_real_tiny_run_is_pruned_and_its_metrics_stay(gc_home, clean_db, tiny_data, capsys):
    """One real training (resnet18, 32 px, one epoch): its model's sha256 is in the lineage; gc with
    keep_runs=0 and no grace removes its folder but not its metrics."""
    from painting_ml import pipeline
    from painting_ml.cli import main
    from painting_ml.core.store import get_store
    from painting_ml.results.retention import collect_garbage

    empty_catalog(clean_db)
    summary = pipeline.run_all(tiny_run_config(tiny_data), run_key="test:retention")
    run_id = summary["run_id"]
    store = get_store()
    capsys.readouterr()  # Keras' progress lines
    assert main(["runs", "--json"]) == 0
    lineage = json.loads(capsys.readouterr().out)[0]
    model = store.local_path(lineage["model_key"])
    assert lineage["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert lineage["code_version"] and lineage["files_pruned_at"] is None
    files = store.list(lineage["run_dir"])
    assert "best.keras" not in {Path(k).name for k in files}  # only what is kept is left after training

    out = collect_garbage(keep_runs=0, grace=timedelta(0), live_for=timedelta(0))
    assert out["runs_pruned"] == [run_id] and out["by_kind"]["runs"]["files"] == len(files)
    assert out["by_kind"]["runs"]["bytes"] == sum(files.values())
    assert store.list(lineage["run_dir"]) == {} and not model.exists()
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM class_metrics WHERE run_id = %s", (run_id,)).fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM artifacts WHERE run_id = %s", (run_id,)).fetchone()[0] == 0
        # No kept run uses the version any more and grace is 0: its image copies went too.
        assert conn.execute("SELECT count(*) FROM image_cache").fetchone()[0] == 0
    assert not any(k.startswith(("derived/", "augmented/")) for k in store.list())
    assert main(["runs", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)[0]
    assert after["files_pruned_at"] and after["model_sha256"] is None and after["model_key"] == lineage["model_key"]
