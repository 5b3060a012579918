"""Alerts reach a person: a real SMTP server (aiosmtpd on 127.0.0.1) receives the failure mail of a
real DAG run stopped by the data-quality gate before train, and the promotion summary."""

import csv
import email
import json
import socket
import sqlite3
import subprocess
from email import policy

import psycopg
import pytest

from painting_ml.core.settings import Settings
from painting_ml.orchestration.notifications import alerts, compose_promotion_summary, compose_task_failure, error_line

pytestmark = pytest.mark.e2e


class Inbox:
    """aiosmtpd handler keeping every message, parsed."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def texts(self):
        return [(m["Subject"], m["To"], m["From"], m.get_body(("html", "plain")).get_content()) for m in self.messages]


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    conn = json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port,
                       "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 10, "retry_limit": 0}})
    try:
        yield inbox, conn
    finally:
        controller.stop()


def test_alerts_are_off_by_default():
    off = alerts(Settings(alert_email=()))
    assert not off.enabled and off.task_failure == off.run_success == off.promotion == []


class FakeTI:
    dag_id, task_id, map_index, try_number, log_url = "painting_retrain", "train", 1, 3, None

    def __init__(self, xcom=None):
        self.xcom = xcom

    def xcom_pull(self, task_ids):
        return self.xcom


def test_failure_mail_content():
    from airflow.sdk.exceptions import AirflowFailException

    try:  # what fail_without_retry raises: painting_ml's error as the cause
        raise AirflowFailException("gate\nsecond line") from ValueError("first <line>\nmore")
    except AirflowFailException as exc:
        caught = exc
    assert error_line(caught) == "ValueError: first <line>"
    subject, body = compose_task_failure({"ti": FakeTI(), "run_id": "scheduled__1", "exception": caught})
    assert subject == "[painting_ml] painting_retrain.train[1] failed in run scheduled__1"
    assert "first &lt;line&gt;" in body and "<td>3</td>" in body
    assert error_line(None).startswith("no exception recorded")


def test_promotion_summary_mail_through_smtp(smtp, monkeypatch):
    from painting_ml.orchestration.mail import PaintingMail
    from painting_ml.orchestration.notifications import compose_promotion

    inbox, conn = smtp
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", conn)
    decision = {"run_id": 7, "promoted": True, "reasons": ["macro-F1 0.812 >= champion's 0.790"],
                "candidate_f1": 0.812, "champion_f1": 0.79, "champion_run_id": 3, "test_accuracy": 0.8224,
                "macro_f1": 0.812}
    PaintingMail(compose_promotion, ["ops@example.org"], "painting-ml@example.org", "smtp_default")(
        {"ti": FakeTI(decision), "run_id": "scheduled__2026-11-30"})
    [(subject, to, sender, body)] = inbox.texts()
    assert subject == "[painting_ml] run 7 promoted to champion: test accuracy 0.8224, macro-F1 0.8120"
    assert (to, sender) == ("ops@example.org", "painting-ml@example.org")
    assert "macro-F1 0.812 &gt;= champion&#x27;s 0.790" in body and "scheduled__2026-11-30" in body
    assert compose_promotion_summary({"run_id": 8, "promoted": False}, "d", "r")[0].startswith(
        "[painting_ml] run 8 not promoted: test accuracy –")


@pytest.mark.e2e
def test_a_collapsed_artist_fails_the_run_before_train_and_mails_the_failure(smtp, clean_db, tmp_path):
    """The whole DAG with the recipe's gate: one artist of three lost most of its files."""
    from painting_ml.core.settings import reload_settings
    from painting_ml.data.synth import generate
    from painting_ml.orchestration.local_airflow import airflow_bin, airflow_env, run_airflow

    inbox, conn = smtp
    data = tmp_path / "data"
    generate(data, artists=3, per_artist=80, size=16, seed=5, test_only_artists=0, broken=0)
    with open(data / "all_data_info.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    victim = sorted({r["artist"] for r in rows})[0]
    for r in [r for r in rows if r["artist"] == victim][6:]:
        for path in data.glob(f"*/{r['new_filename']}"):
            path.unlink()
    env = airflow_env(reload_settings(), clean_db, airflow_home=tmp_path / "airflow")
    env.update({"PAINTING_ALERT_EMAIL": "ops@example.org", "PAINTING_ALERT_FROM": "painting-ml@example.org",
                "AIRFLOW_CONN_SMTP_DEFAULT": conn})
    run_airflow(["db", "migrate"], env, capture=True, timeout=300)
    conf = {"data_dir": str(data), "n_artists": 3, "strategy": "capped", "cap": 80, "weights": None, "wandb": False}
    proc = subprocess.run([airflow_bin(), "dags", "test", "painting_retrain", "-c", json.dumps(conf)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "state=failed" in proc.stdout + proc.stderr

    with sqlite3.connect(tmp_path / "airflow" / "airflow.db") as meta:
        run_id = meta.execute("SELECT run_id FROM dag_run WHERE dag_id = 'painting_retrain'").fetchone()[0]
        states = dict(meta.execute("SELECT task_id, state FROM task_instance WHERE run_id = ?", (run_id,)))
    assert states["validate"] == "failed" and states["split"] == "success"
    assert states["augment"] == "upstream_failed" and states.get("train") in (None, "upstream_failed")
    with psycopg.connect(clean_db) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 0  # no training started
        status, findings = db.execute("SELECT status, findings FROM dataset_validations").fetchone()
    assert status == "failed" and {f["check"] for f in findings} >= {"reject_rate", "split_counts"}

    mails = {subject: body for subject, _, _, body in inbox.texts()}
    subject = f"[painting_ml] painting_retrain.validate failed in run {run_id}"
    assert subject in mails, list(mails)
    body = mails[subject]
    for needed in ("<td>painting_retrain</td>", "<td>validate</td>", f"<td>{run_id}</td>",
                   "DataQualityError: data-quality gate failed on dataset version", f"{victim} val"):
        assert needed in body, needed
    assert f"[painting_ml] painting_retrain run {run_id} failed" in mails  # the DAG run's own mail
