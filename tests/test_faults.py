"""Fault injection: a training process killed mid-run resumes from its checkpoint; a database
connection dropped during ingest rolls back and the retry succeeds; writes are atomic; two runs
at once stay isolated; secrets never reach logs, the database or the artifacts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from conftest import stored
from PIL import Image

from painting_ml.core import db
from painting_ml.core.config import CPU_DEMO
from painting_ml.core.errors import DatabaseError
from painting_ml.core.files import write_atomic
from painting_ml.data import ingest as catalog

pytestmark = pytest.mark.db

CLI = str(Path(sys.executable).with_name("painting-ml"))
TRAIN_ARGS = ["--n-artists", "3", "--backbone", "resnet18", "--image-size", "32", "--batch-size", "8",
              "--augment", "hflip", "--no-wandb", "--set", "head_units=16",
              "--set", "early_stopping_patience=0",
              # the CPU-sized config for everything the flags above leave out (weights, fine-tuning, gate)
              *[a for k, v in CPU_DEMO.items() if k not in ("image_size", "epochs", "optimizers")
                for a in ("--set", f"{k}={json.dumps(v)}")]]


def _env(url, home, **extra):
    return {**os.environ, "PAINTING_DB_URL": url, "PAINTING_HOME": str(home), "PAINTING_PROGRESS": "0",
            "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _epochs(url, key):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT e.epoch, e.seconds FROM epochs e JOIN runs r ON r.id = e.run_id "
                            "WHERE r.run_key = %s ORDER BY e.epoch", (key,)).fetchall()


@pytest.mark.e2e
def test_killed_training_resumes_from_its_checkpoint(clean_db, tiny_data, painting_home):
    cmd = [CLI, "train", "--data-dir", str(tiny_data), "--epochs", "4", "--run-key", "kill-test", *TRAIN_ARGS]
    proc = subprocess.Popen(cmd, env=_env(clean_db, painting_home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not _epochs(clean_db, "kill-test") and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the worker dies: no cleanup, no finally blocks
    proc.wait()
    before = _epochs(clean_db, "kill-test")
    assert 1 <= len(before) < 4
    done = subprocess.run(cmd, env=_env(clean_db, painting_home), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    after = _epochs(clean_db, "kill-test")
    assert [e for e, _ in after] == [1, 2, 3, 4]  # complete and unique
    assert after[0] == before[0]  # epoch 1 was not trained again (its row kept its timing)
    with psycopg.connect(clean_db) as conn:
        status, model = conn.execute("SELECT status, model_path FROM runs WHERE run_key = 'kill-test'").fetchone()
        n_runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert status == "trained" and stored(model).is_file() and n_runs == 1 and model.endswith("/model.keras")
    assert not stored(model).with_name("best.keras").exists()  # checkpoints gone once trained
    # A fresh process (as a Celery worker is) loads the saved model, custom layers included.
    with psycopg.connect(clean_db) as conn:
        run_id = conn.execute("SELECT id FROM runs WHERE run_key = 'kill-test'").fetchone()[0]
    ev = subprocess.run([CLI, "evaluate", "--run-id", str(run_id), "--json"], env=_env(clean_db, painting_home),
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert json.loads(ev.stdout.strip().splitlines()[-1])["run_id"] == run_id


def _drop_connection_at(monkeypatch, statement: str):
    """Make the named statement of sql/ingest.sql kill its own connection first, exactly as a
    server restart or network cut would, mid-transaction. Returns the undo."""
    real_sql = db.sql

    def dying_sql(file, key):
        text = real_sql(file, key)
        if (file, key) == ("ingest", statement):
            return "SELECT pg_terminate_backend(pg_backend_pid());\n" + text
        return text

    monkeypatch.setattr(db, "sql", dying_sql)
    return lambda: monkeypatch.setattr(db, "sql", real_sql)


def _counts(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("paintings", "rejects", "ingest_files"))


def test_connection_dropped_during_ingest_rolls_back_and_retry_succeeds(clean_db, tiny_data, monkeypatch):
    # A first load: the catalog COPY and the rejects already ran in this transaction when the
    # manifest's staging table is made.
    undo = _drop_connection_at(monkeypatch, "create_staging_files")
    with pytest.raises(DatabaseError, match="rolled back, nothing was half-written"):
        catalog.ingest(tiny_data, clean_db)
    assert _counts(clean_db) == (0, 0, 0)
    undo()
    summary = catalog.ingest(tiny_data, clean_db)
    after = _counts(clean_db)
    assert after[0] == summary.loaded > 0 and after[1] == summary.rejected > 0

    # A re-ingest (the staging path): the staging COPY and the update ran, the insert is cut off.
    undo = _drop_connection_at(monkeypatch, "insert_new_paintings")
    with pytest.raises(DatabaseError, match="rolled back, nothing was half-written"):
        catalog.ingest(tiny_data, clean_db, full=True)
    assert _counts(clean_db) == after
    undo()
    assert catalog.ingest(tiny_data, clean_db, full=True).loaded == summary.loaded
    assert _counts(clean_db) == after


def test_atomic_image_write_leaves_nothing_on_failure(tmp_path):
    dest = tmp_path / "out.png"
    write_atomic(Image.new("RGB", (4, 4)), dest, format="PNG")
    good = dest.read_bytes()

    class Broken:
        def save(self, path, **kw):
            Path(path).write_bytes(b"half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(Broken(), dest, format="PNG")
    assert dest.read_bytes() == good  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temp file left behind


@pytest.mark.unit
def test_threads_writing_one_target_at_once_each_finish(tmp_path):
    # Exact copies of a painting share one image-cache key: the cache's worker threads may write the
    # same file at the same moment. Each writes its own temp file and renames it; none fails.
    import threading

    dest, ready = tmp_path / "same.png", threading.Barrier(8)
    errors: list[BaseException] = []

    class Slow:
        def save(self, path, **kw):
            ready.wait()  # every thread is inside its write before any renames
            Image.new("RGB", (4, 4)).save(path, **kw)

    def write():
        try:
            write_atomic(Slow(), dest, format="PNG")
        except BaseException as e:  # collected: an exception in a thread would go unseen
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.png"]


@pytest.mark.e2e
def test_two_runs_at_once_are_isolated_and_secrets_stay_out(clean_db, tiny_data, painting_home):
    # The same database reached through a URL with a password; a fake wandb key in the environment.
    secret_url = psycopg.conninfo.make_conninfo(clean_db, password="s3cret-db-pw")
    env = _env(secret_url, painting_home, WANDB_API_KEY="wandb-key-0123456789abcdef", WANDB_MODE="offline")
    catalog.ingest_if_changed(tiny_data, clean_db)  # both runs then share the catalog as it is
    common = [CLI, "-v", "run", "--data-dir", str(tiny_data), "--epochs", "1",
              *[a for a in TRAIN_ARGS if a != "--no-wandb"]]
    procs = [subprocess.Popen(common + ["--optimizer", opt, "--run-key", f"iso-{opt}", "--seed", str(seed)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for opt, seed in (("adam", 1), ("sgd", 2))]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    with psycopg.connect(clean_db) as conn:
        runs = conn.execute("SELECT run_key, run_dir, config ->> 'optimizer', dataset_version_id FROM runs "
                            "ORDER BY run_key").fetchall()
        epochs = conn.execute("SELECT run_id, count(*) FROM epochs GROUP BY 1").fetchall()
        preds = conn.execute("SELECT run_id, count(*) FROM predictions GROUP BY 1").fetchall()
        dump = json.dumps([conn.execute(f"SELECT * FROM {t}").fetchall()  # noqa: S608 (fixed table names)
                           for t in ("runs", "epochs", "artifacts", "promotions", "dataset_versions")], default=str)
    assert [r[0] for r in runs] == ["iso-adam", "iso-sgd"] and [r[2] for r in runs] == ["adam", "sgd"]
    assert runs[0][1] != runs[1][1] and runs[0][3] != runs[1][3]  # own folder; seeds differ -> own split
    assert sorted(n for _, n in epochs) == [1, 1] and len(preds) == 2
    for run_dir in (r[1] for r in runs):
        assert stored(f"{run_dir}/model.keras").is_file() and stored(f"{run_dir}/report.html").is_file()
    secrets = ("s3cret-db-pw", "wandb-key-0123456789abcdef")
    texts = outputs + [dump] + [p.read_text(errors="ignore") for r in runs for p in stored(r[1]).rglob("*")
                                if p.is_file() and p.suffix in (".html", ".json", ".yaml", ".txt", ".log", ".jsonl")]
    for secret in secrets:
        assert not any(secret in t for t in texts), secret
