"""An artifact store that cannot be used is one line before any work, through the real CLI, against a
real S3 API server (moto's, with its IAM authentication on): wrong credentials, no credentials, a
bucket that does not exist (never an empty store), the server stopped, a malformed endpoint and an
unsupported scheme. Each: exit status 2, stderr's last line names the store with its credentials
hidden and the fix, no traceback."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).with_name("painting-ml"))
BUCKET = "painting-faults"
# No credentials from this host's files or an instance profile may leak into a case.
NO_AWS = {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
          "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server that checks credentials: the bucket BUCKET and a user allowed everything in
    it; its endpoint and that user's keys."""
    import boto3
    import moto.settings
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    admin = {"endpoint_url": endpoint, "aws_access_key_id": "admin", "aws_secret_access_key": "admin",
             "region_name": "us-east-1"}
    boto3.client("s3", **admin).create_bucket(Bucket=BUCKET)
    iam = boto3.client("iam", **admin)
    iam.create_user(UserName="painting")
    iam.put_user_policy(UserName="painting", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="painting")["AccessKey"]
    saved = moto.settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # from now on every request is authenticated
    try:
        yield {"endpoint": endpoint, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    finally:
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = saved
        server.stop()


def painting_ml(args: list[str], clean_db: str, home: Path, **env: str | None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    full.update(NO_AWS, PAINTING_DB_URL=clean_db, PAINTING_HOME=str(home), PAINTING_PROGRESS="0",
                TF_CPP_MIN_LOG_LEVEL="2")
    for k, v in env.items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=full, timeout=240)


def last_line(out: subprocess.CompletedProcess) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines, out
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return lines[-1]


def creds(key: str, secret: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}


def test_a_usable_store_passes_and_a_refused_one_is_one_line(s3, clean_db, tmp_path):
    store = {"PAINTING_ARTIFACTS_URL": f"s3://{BUCKET}/{tmp_path.name}", "PAINTING_ARTIFACTS_ENDPOINT": s3["endpoint"]}
    good = painting_ml(["gc", "--dry-run", "--json"], clean_db, tmp_path, **store, **creds(s3["key"], s3["secret"]))
    assert good.returncode == 0, good.stderr[-3000:]
    assert json.loads(good.stdout.strip().splitlines()[-1])["files"] == 0

    # Keys the server does not know: every command that uses the store stops at once, in one line.
    for args in (["gc", "--dry-run"], ["predict", str(tmp_path / "x.jpg")], ["report", "--run-id", "1"]):
        out = painting_ml(args, clean_db, tmp_path, **store, **creds("AKIAWRONGWRONGWRONG1", "wrong"))
        line = last_line(out)
        assert out.returncode == 2, out.stderr[-3000:]
        assert line.startswith(f"painting-ml {args[0]}: error: the artifact store s3://{BUCKET}/"), line
        assert "would not let these credentials" in line and "InvalidAccessKeyId" in line, line
        assert "AWS_ACCESS_KEY_ID" in line, line
        assert "wrong" not in line.replace("AKIAWRONG", "")  # the secret is never shown


def test_missing_credentials_are_one_line(s3, clean_db, tmp_path):
    out = painting_ml(["gc", "--dry-run"], clean_db, tmp_path, PAINTING_ARTIFACTS_URL=f"s3://{BUCKET}/x",
                      PAINTING_ARTIFACTS_ENDPOINT=s3["endpoint"])
    line = last_line(out)
    assert out.returncode == 2
    assert line == (f"painting-ml gc: error: no credentials for the artifact store s3://{BUCKET}/x (endpoint "
                    f"{s3['endpoint']}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or give "
                    "the host an instance profile"), line


def test_a_bucket_that_does_not_exist_is_not_an_empty_store(s3, clean_db, tmp_path):
    out = painting_ml(["gc", "--dry-run"], clean_db, tmp_path, PAINTING_ARTIFACTS_URL="s3://no-such-bucket/p",
                      PAINTING_ARTIFACTS_ENDPOINT=s3["endpoint"], **creds(s3["key"], s3["secret"]))
    line = last_line(out)
    assert out.returncode == 2 and "would free" not in out.stdout
    assert "the bucket 'no-such-bucket' of the artifact store s3://no-such-bucket/p" in line, line
    assert "does not exist: create it" in line and "PAINTING_ARTIFACTS_URL" in line, line


def test_a_bucket_that_does_not_exist_is_refused_by_listing_too(s3, tmp_path, monkeypatch):
    """Below the up-front check: a listing of a missing bucket (what gc reads) is an error, not {}."""
    from painting_ml.core.store import ArtifactStore, StoreError, storage_options

    for k, v in creds(s3["key"], s3["secret"]).items():
        monkeypatch.setenv(k, v)
    store = ArtifactStore("s3://no-such-bucket/p", tmp_path, storage_options(s3["endpoint"]))
    with pytest.raises(StoreError, match="the bucket 'no-such-bucket' .* does not exist"):
        store.list("runs")
    with pytest.raises(StoreError, match="does not exist"):
        store.fetch("runs/model.keras")


def test_a_stopped_server_and_bad_urls_are_one_line(clean_db, tmp_path, tiny_data):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    server.stop()
    gone = {"PAINTING_ARTIFACTS_URL": f"s3://{BUCKET}/p", "PAINTING_ARTIFACTS_ENDPOINT": f"http://{host}:{port}",
            **creds("testing", "testing")}
    started = time.monotonic()
    out = painting_ml(["gc", "--dry-run"], clean_db, tmp_path, **gone)
    line = last_line(out)
    assert out.returncode == 2
    assert line.startswith(f"painting-ml gc: error: cannot reach the artifact store s3://{BUCKET}/p (endpoint "
                           f"http://{host}:{port}): is the object store up and PAINTING_ARTIFACTS_ENDPOINT "
                           "right?"), line
    assert time.monotonic() - started < 60

    # A run stops before it ingests anything (no painting, no dataset version).
    run = painting_ml(["run", "--data-dir", str(tiny_data), "--backbone", "resnet18", "--weights", "none",
                       "--no-wandb"], clean_db, tmp_path, **gone)
    assert run.returncode == 2 and "cannot reach the artifact store" in last_line(run), run.stderr[-3000:]
    import psycopg

    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM paintings").fetchone()[0] == 0

    for env, needle in (
            ({"PAINTING_ARTIFACTS_URL": "ftp://user:secret@host/artifacts"},
             "PAINTING_ARTIFACTS_URL='ftp://***@host/artifacts' uses the scheme 'ftp://', which the artifact store "
             "does not support; use a local folder"),
            ({"PAINTING_ARTIFACTS_URL": f"s3://{BUCKET}/p", "PAINTING_ARTIFACTS_ENDPOINT": "http//minio:9000"},
             "PAINTING_ARTIFACTS_ENDPOINT='http//minio:9000' is not an endpoint URL; write http(s)://host:port"),
            ({"PAINTING_ARTIFACTS_URL": "s3://Bad_Bucket/p"}, "does not name a valid bucket")):
        for args in (["gc", "--dry-run"], ["run", "--data-dir", str(tiny_data)]):
            out = painting_ml(args, clean_db, tmp_path, **env)
            line = last_line(out)
            assert out.returncode == 2 and line.startswith(f"painting-ml {args[0]}: error: "), out.stderr[-3000:]
            assert needle in line and "secret" not in out.stderr, line


def test_the_check_below_the_settings(tmp_path, monkeypatch):
    """What the settings cannot refuse alone: a malformed endpoint handed to the store directly, and a
    local store whose folder cannot be made; each one line, and a good local store leaves nothing."""
    from painting_ml.core.store import ArtifactStore, StoreError, storage_options

    for k, v in creds("testing", "testing").items():
        monkeypatch.setenv(k, v)
    store = ArtifactStore(f"s3://{BUCKET}/p", tmp_path / "scratch", storage_options("not a url:::"))
    with pytest.raises(StoreError) as err:
        store.check()
    assert str(err.value).startswith("PAINTING_ARTIFACTS_ENDPOINT='not a url:::' is not a usable URL"), err.value

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=f"the artifact store {blocker}/artifacts is not a writable folder"):
        ArtifactStore((blocker / "artifacts").as_uri(), tmp_path).check()

    good = ArtifactStore((tmp_path / "artifacts").as_uri(), tmp_path)
    good.check()
    assert good.list() == {} and not (tmp_path / "artifacts" / "_probe").exists()
