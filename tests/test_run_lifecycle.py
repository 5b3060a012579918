"""Whatever stops a training, its row in Postgres tells the truth: real stop signals to a real
``painting-ml`` process (SIGTERM, SIGINT, SIGHUP: ``interrupted``, one line, 128 + n, resumable;
SIGKILL: ``lost`` once the sweep runs), two live attempts with one run key (the second refused),
the database stopped and restarted mid-training (no epoch row lost), and a trained run whose
dataset version lost paintings (evaluated on the rest)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
from conftest import stored, tiny_run_config, using_database

from painting_ml.core.config import CPU_DEMO

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).with_name("painting-ml"))
TRAIN_ARGS = ["--n-artists", "3", "--backbone", "resnet18", "--image-size", "32", "--batch-size", "8",
              "--augment", "hflip", "--no-wandb", "--set", "head_units=16", "--set", "early_stopping_patience=0",
              *[a for k, v in CPU_DEMO.items() if k not in ("image_size", "epochs", "optimizers")
                for a in ("--set", f"{k}={json.dumps(v)}")]]


class Cli:
    """A ``painting-ml`` process whose stdout and stderr are read as they come."""

    def __init__(self, args: list[str], url: str, home: Path, **env: str) -> None:
        self.out: list[str] = []
        self.err: list[str] = []
        self.proc = subprocess.Popen(
            [CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, "PAINTING_DB_URL": url, "PAINTING_HOME": str(home), "PAINTING_PROGRESS": "0",
                 "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **env})
        self._readers = [threading.Thread(target=self._read, args=(s, lines), daemon=True)
                         for s, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for r in self._readers:
            r.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, what: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"exited ({self.proc.returncode}) before {what}:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {what} after {timeout} s:\n{self.text()}"
            time.sleep(0.1)

    def finish(self, timeout: float = 300) -> int:
        rc = self.proc.wait(timeout=timeout)
        for r in self._readers:
            r.join(timeout=10)
        return rc

    def text(self) -> str:
        return "\n".join(self.out[-30:] + ["--- stderr ---"] + self.err[-30:])

    def our_lines(self) -> list[str]:
        """stderr without TensorFlow's start-up chatter (absl writes it before logging is set up)."""
        return [e for e in self.err if e.strip() and "absl::InitializeLog" not in e and "oneDNN" not in e]


def train_args(data: Path, key: str, epochs: int = 3, command: str = "train") -> list[str]:
    return [command, "--data-dir", str(data), "--epochs", str(epochs), "--run-key", key, *TRAIN_ARGS]


def run_row(url: str, key: str) -> dict | None:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("SELECT id, status, error, heartbeat_at, model_path, run_dir FROM runs WHERE run_key = %s",
                            (key,)).fetchone()


def key_held(url: str, key: str) -> bool:
    from painting_ml.core import locks

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
                            "AND objid = hashtext(%s)::oid AND objsubid = 2)", (locks.RUN, key)).fetchone()[0]


def epochs_of(url: str, key: str) -> list[tuple[int, float]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT e.epoch, e.seconds FROM epochs e JOIN runs r ON r.id = e.run_id "
                            "WHERE r.run_key = %s ORDER BY e.epoch", (key,)).fetchall()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_marks_the_run_interrupted_in_one_line(sig, clean_db, tiny_data, painting_home):
    key = f"stop-{sig.name}"
    command = "run" if sig == signal.SIGTERM else "train"  # every step of `run`, or just the training's
    cli = Cli(train_args(tiny_data, key, command=command), clean_db, painting_home)
    cli.wait_for(lambda: epochs_of(clean_db, key), "a first epoch row")
    cli.proc.send_signal(sig)  # to the process alone, as Kubernetes and docker stop do
    assert cli.finish(timeout=120) == 128 + sig
    row = run_row(clean_db, key)
    assert (row["status"], row["error"]) == ("interrupted", f"interrupted by {sig.name}")
    lines = cli.our_lines()
    assert len(lines) == 1, cli.text()  # one line, no traceback
    assert lines[0].startswith(f"painting-ml {command}: interrupted by {sig.name}; run {row['id']} marked interrupted")
    assert f"resume with: painting-ml {command} --data-dir {tiny_data} --epochs 3 --run-key {key} --n-artists 3" \
        in lines[0]
    assert (stored(row["run_dir"]) / "backup" / "phase1" / "latest.weights.h5").is_file()  # checkpoints kept
    if sig != signal.SIGTERM:
        return
    # The same key resumes after the last finished epoch: no epoch is trained twice or lost.
    before = epochs_of(clean_db, key)
    again = Cli(train_args(tiny_data, key, command=command), clean_db, painting_home)
    assert again.finish() == 0, again.text()
    after = epochs_of(clean_db, key)
    assert [e for e, _ in after] == [1, 2, 3] and after[:len(before)] == before
    assert not any(f"Epoch {e}/3" in line for line in again.out for e in range(1, len(before) + 1)), again.text()
    row = run_row(clean_db, key)
    assert (row["status"], row["error"]) == ("evaluated", None) and stored(row["model_path"]).is_file()


def test_a_killed_training_is_swept_lost_never_running_forever(clean_db, tiny_data, painting_home):
    from painting_ml.learn.run_status import sweep_lost_runs

    key = "sigkill"
    cli = Cli(train_args(tiny_data, key, epochs=4), clean_db, painting_home)
    cli.wait_for(lambda: epochs_of(clean_db, key), "a first epoch row")
    # While the process lives it holds the run key: even a zero-minute sweep leaves it running.
    assert sweep_lost_runs(clean_db, minutes=1e-6) == [] and run_row(clean_db, key)["status"] == "running"
    os.killpg(cli.proc.pid, signal.SIGKILL)  # no handler, no finally: as an OOM kill or a lost host
    cli.finish()
    deadline = time.monotonic() + 60  # the server ends the dead process's session, which frees the key
    while key_held(clean_db, key) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run_row(clean_db, key)["status"] == "running"
    # `painting-ml runs` sweeps first; the heartbeat is older than the (tiny) timeout and nobody holds the key.
    runs = subprocess.run([CLI, "runs", "--json"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PAINTING_DB_URL": clean_db, "PAINTING_LOST_AFTER_MINUTES": "0.001"})
    assert runs.returncode == 0, runs.stderr
    row = run_row(clean_db, key)
    assert row["status"] == "lost" and "no heartbeat" in row["error"] and "run key" in row["error"]
    assert json.loads(runs.stdout)[0]["status"] == "lost"
    assert f"run {row['id']} ({key}) marked lost" in runs.stderr


def test_a_second_attempt_with_the_same_key_is_refused(clean_db, tiny_data, painting_home):
    key = "twice"
    first = Cli(train_args(tiny_data, key, epochs=2), clean_db, painting_home)
    first.wait_for(lambda: (run_row(clean_db, key) or {}).get("status") == "running", "the run row")
    second = Cli(train_args(tiny_data, key, epochs=2), clean_db, painting_home)
    assert second.finish(timeout=120) == 2
    lines = second.our_lines()
    assert len(lines) == 1, second.text()
    assert lines[0].startswith(f"painting-ml train: error: run key '{key}' is being trained by another process "
                               f"(painting-ml pid {first.proc.pid} on ")
    assert run_row(clean_db, key)["status"] == "running"  # the refused attempt did not touch the row
    assert first.finish() == 0, first.text()
    assert [e for e, _ in epochs_of(clean_db, key)] == [1, 2] and run_row(clean_db, key)["status"] == "trained"


def test_the_database_stopped_mid_training_loses_no_epoch_row(tiny_data, tmp_path, painting_home, monkeypatch):
    from painting_ml.core import db

    # Outside pytest's base folder: a pytest session starting meanwhile closes that to other users,
    # and the server runs as one (pgserver's, when the tests run as root).
    folder = Path(tempfile.mkdtemp(prefix="pm-outage-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder / "runtime"))
    (folder / "runtime").mkdir(mode=0o700)
    import pgserver
    from pgserver._commands import pg_ctl

    server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")  # a private server this test may stop
    try:
        _stop_and_restart_mid_training(server, pg_ctl, db, tiny_data, tmp_path / "home")
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def _stop_and_restart_mid_training(server, pg_ctl, db, tiny_data: Path, home: Path) -> None:
    url = server.get_uri()
    db.migrate(url)
    key = "db-outage"
    cli = Cli(train_args(tiny_data, key, epochs=2), url, home)
    cli.wait_for(lambda: any(line.startswith("Epoch 1/") for line in cli.out), "epoch 1")
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
    # Epoch 1 ends: its row goes to the history file, its checkpoint is written, the table is out of
    # reach; the training stops and retries writing its state. The server comes back meanwhile.
    cli.wait_for(lambda: list(home.rglob("backup/epochs.jsonl")), "the epoch history file")
    time.sleep(5)  # the row's write fails within a second of the file's; the state's retries last ~30 s
    server.ensure_postgres_running()
    assert cli.finish(timeout=120) == 2
    lines = cli.our_lines()
    assert len(lines) == 1, cli.text()
    assert lines[0].startswith(f"painting-ml train: error: run 1 stopped: cannot connect to the painting database "
                               f"{db.redact_url(url)}: ")
    assert f"resume with: painting-ml train --data-dir {tiny_data}" in lines[0] and f"--run-key {key}" in lines[0]
    row = run_row(url, key)
    assert row["status"] == "failed" and epochs_of(url, key) == []  # its state written once the server was back
    again = Cli(train_args(tiny_data, key, epochs=2), url, home)
    assert again.finish() == 0, again.text()
    assert [e for e, _ in epochs_of(url, key)] == [1, 2]  # epoch 1's row came from the history file
    assert not any(line.startswith("Epoch 1/") for line in again.out), again.text()  # and was not trained again
    assert run_row(url, key)["status"] == "trained"


@pytest.mark.train
def test_a_trained_run_whose_version_lost_paintings_is_evaluated_on_the_rest(server_url, db_url, tiny_data,
                                                                             tmp_path, painting_home):
    from painting_ml import pipeline
    from painting_ml.core import db
    from painting_ml.data.ingest import ingest_if_changed
    from painting_ml.results.report import render_report

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    url = db.create_database(server_url, "pm_gone")
    db.migrate(url)
    try:
        with using_database(url):
            trained = pipeline.prepare_and_train(tiny_run_config(data), run_key="gone")
            with psycopg.connect(url) as conn:  # an ingest finds two test paintings gone after training
                names = [r[0] for r in conn.execute(
                    "SELECT filename FROM dataset_items WHERE version_id = %s AND split = 'test' ORDER BY filename "
                    "LIMIT 2", (trained["dataset_version_id"],))]
            for name in names:
                next(data.rglob(name)).unlink()
            ingest_if_changed(str(data))
            summary = pipeline.evaluate_step(trained["run_id"])
            assert summary["gone"] == {"test": 2}
            with psycopg.connect(url) as conn:
                n_test = conn.execute("SELECT count(*) FROM dataset_items WHERE version_id = %s AND split = 'test'",
                                      (trained["dataset_version_id"],)).fetchone()[0]
                status = conn.execute("SELECT status FROM runs WHERE id = %s", (trained["run_id"],)).fetchone()[0]
            assert summary["n_test"] == n_test - 2 and status == "evaluated"
            report = render_report(trained["run_id"]).read_text()
            assert "Left the folder" in report and "2 test" in report
    finally:
        db.drop_database(server_url, url)
