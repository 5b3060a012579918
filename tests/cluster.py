"""A real Airflow CeleryExecutor cluster on this machine, for the integration test.

PostgreSQL metadata database (created fresh on the PAINTING_DB_URL server), Redis broker, an S3
API server (moto's standalone ``moto_server``) holding the artifact store, `airflow api-server`,
scheduler, dag-processor and two Celery workers: one for queue `default`, one for queue `gpu`.
Every process runs in its own process group and is stopped by PID.

Each Airflow component stands for a host of its own: its own PAINTING_HOME, AIRFLOW_HOME and HOME
under ``<root>/<component>/``; nothing is shared but PostgreSQL, Redis and the object store. A
``sitecustomize`` audit hook (on each component's PYTHONPATH) makes that real: opening, listing,
writing or removing anything under another component's folder fails with PermissionError and is
written to ``<root>/<component>/foreign-access.log``, so a task that needs another host's files
fails and the test names the file.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from conftest import PARSE_ONCE

from painting_ml.orchestration.local_airflow import (
    Children,
    airflow_bin,
    api_server_env,
    free_port,
    new_secrets,
    reachable,
    run_airflow,
)
from painting_ml.orchestration.schedule import GPU_POOL

REPO = Path(__file__).resolve().parent.parent

#: The components, each a "host" with its own folders ("cli" runs `airflow db migrate` and co.).
COMPONENTS = ("cli", "api-server", "scheduler", "dag-processor", "worker-default", "worker-gpu")

#: Fake credentials for the moto server (it accepts any).
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

_GUARD = r'''
"""Written by tests/cluster.py: this process is one host of a multi-host cluster test; the folders
of the other hosts (PAINTING_TEST_FOREIGN, os.pathsep-separated) are not there for it."""
import os
import sys
import traceback

_ROOTS = tuple(r.rstrip(os.sep) + os.sep for r in os.environ.get("PAINTING_TEST_FOREIGN", "").split(os.pathsep) if r)
_LOG = os.environ.get("PAINTING_TEST_FOREIGN_LOG")
_EVENTS = {"open", "os.listdir", "os.scandir", "glob.glob", "os.chdir", "os.mkdir", "os.rmdir", "os.remove",
           "os.rename", "os.truncate", "os.utime", "os.chmod", "os.link", "os.symlink", "shutil.copyfile",
           "shutil.copymode", "shutil.copystat", "shutil.copytree", "shutil.move", "shutil.rmtree"}
_busy = False


def _hook(event, args):
    global _busy
    if event not in _EVENTS or _busy or not _ROOTS:
        return
    for arg in args[:2]:
        if not isinstance(arg, (str, bytes, os.PathLike)):
            continue
        try:
            path = os.path.abspath(os.fsdecode(arg))
        except Exception:
            continue
        if (path + os.sep).startswith(_ROOTS):
            _busy = True
            try:
                if _LOG:
                    with open(_LOG, "a") as f:
                        f.write(f"{event} {path} (pid {os.getpid()}: {' '.join(sys.argv[:4])})\n")
                        f.write("".join(traceback.format_stack()[-12:-1]) + "\n")
            finally:
                _busy = False
            raise PermissionError(13, "another host's folder (tests/cluster.py)", path)


if _ROOTS:
    sys.addaudithook(_hook)
    if _LOG:  # the test checks that every component ran guarded
        open(os.path.join(os.path.dirname(_LOG), "guarded"), "a").close()
'''


def painting_home_of(root: Path, component: str) -> Path:
    """The PAINTING_HOME of ``component`` in the cluster under ``root``."""
    return root / component / "painting"


class Cluster:
    """Args:
        root: the cluster's folder: ``logs/`` (each process's output), ``s3/`` and one folder per
            component (see :data:`COMPONENTS`).
        metadata_url: libpq URL of Airflow's (empty) metadata database.
        painting_db_url: libpq URL of the painting database (PAINTING_DB_URL of the tasks).
        broker_url: the Celery broker.
        data_dir: PAINTING_DATA_DIR (under the default worker's home: only it reads data folders).
        bucket, prefix: the artifact store is ``s3://<bucket>/<prefix>`` on the moto server.
    """

    def __init__(self, root: Path, metadata_url: str, painting_db_url: str,
                 broker_url: str = "redis://127.0.0.1:6379/5", data_dir: Path | None = None,
                 bucket: str = "painting-artifacts", prefix: str = "cluster"):
        self.root = root
        self.children = Children(root / "logs")  # every process, its output in logs/<name>.log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.metadata_url = metadata_url
        self.s3_port = free_port()
        self.s3_endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.bucket, self.prefix = bucket, prefix
        # Nothing of this machine's own store, data or AWS account leaks into the cluster.
        dropped = ("AWS_", "PAINTING_HOME", "PAINTING_DATA_DIR", "PAINTING_ARTIFACTS_", "PAINTING_WEIGHTS")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
        self.env.update(api_server_env(self.base, metadata_url, new_secrets()))
        self.env.update({
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            # Keys of its own on the shared Redis: two cluster tests on one machine (two checkouts, CI jobs)
            # never take each other's tasks from the "default" and "gpu" queues.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": f"painting-test-{secrets.token_hex(4)}:",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN']}",
            "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"result_extended": True}),
            **PARSE_ONCE,
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "900",
            "PAINTING_DB_URL": painting_db_url,
            "PAINTING_ARTIFACTS_URL": f"s3://{bucket}/{prefix}",
            "PAINTING_ARTIFACTS_ENDPOINT": self.s3_endpoint,
            **S3_ENV,
            "WANDB_MODE": "disabled",
            **({"PAINTING_DATA_DIR": str(data_dir)} if data_dir else {}),
            "PAINTING_INGEST_QUIET_SECONDS": "0",  # the watched folder is copied just before; no copy runs
            "TF_CPP_MIN_LOG_LEVEL": "2",
        })
        self.guard = root / "guard"

    # --- the components' own folders ------------------------------------------------------------
    def painting_home(self, component: str) -> Path:
        return painting_home_of(self.root, component)

    def airflow_home(self, component: str) -> Path:
        return self.root / component / "airflow"

    def foreign_access_log(self, component: str) -> Path:
        return self.root / component / "foreign-access.log"

    def guarded(self, component: str) -> bool:
        """Whether ``component``'s processes ran with the audit hook that keeps them out of the
        other components' folders."""
        return (self.root / component / "guarded").is_file()

    def env_of(self, component: str) -> dict[str, str]:
        """The environment of ``component``: its own homes; every other component's folder is foreign."""
        own = self.root / component
        for sub in ("painting", "airflow", "home"):
            (own / sub).mkdir(parents=True, exist_ok=True)
        foreign = [str(self.root / c) for c in COMPONENTS if c != component]
        pythonpath = os.pathsep.join(p for p in (str(self.guard), self.env.get("PYTHONPATH", "")) if p)
        return {**self.env, "AIRFLOW_HOME": str(own / "airflow"), "PAINTING_HOME": str(own / "painting"),
                "HOME": str(own / "home"), "PYTHONPATH": pythonpath,
                "PAINTING_TEST_FOREIGN": os.pathsep.join(foreign),
                "PAINTING_TEST_FOREIGN_LOG": str(self.foreign_access_log(component))}

    def run(self, *args: str, timeout: float = 300) -> str:
        """``airflow <args>`` on the "cli" host; its output."""
        return run_airflow(list(args), self.env_of("cli"), timeout=timeout, capture=True).stdout

    def start(self, name: str, *args: str, **extra_env: str) -> None:
        """``airflow <args>`` as component ``name`` (a host of its own), in the background."""
        self.children.start(name, [airflow_bin(), *args], {**self.env_of(name), **extra_env})

    # --- the object store -------------------------------------------------------------------------
    def s3(self):
        """A boto3 client of the moto server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name=S3_ENV["AWS_DEFAULT_REGION"],
                            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"])

    def objects(self) -> dict[str, int]:
        """Every key of the artifact store (relative to its prefix) with its size."""
        out = {}
        for page in self.s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/"):
            out.update({o["Key"][len(self.prefix) + 1:]: o["Size"] for o in page.get("Contents", [])})
        return out

    def read_object(self, key: str) -> bytes:
        return self.s3().get_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")["Body"].read()

    def _start_s3(self) -> None:
        """moto's standalone S3 server, a process of its own (the store every host reaches)."""
        moto = Path(sys.executable).with_name("moto_server")
        self.children.start("s3", [str(moto), "-H", "127.0.0.1", "-p", str(self.s3_port)], {**self.env, **S3_ENV},
                            cwd=self.root)
        self.wait_for(lambda: reachable("127.0.0.1", self.s3_port), 60, "the moto S3 server", every=0.3)
        self.s3().create_bucket(Bucket=self.bucket)

    def up(self) -> None:
        self.guard.mkdir(parents=True, exist_ok=True)
        (self.guard / "sitecustomize.py").write_text(_GUARD)
        self._start_s3()
        self.run("db", "migrate", timeout=600)
        self.run("pools", "set", GPU_POOL, "1", "one slot per GPU")
        self.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.port))
        self.start("scheduler", "scheduler")
        self.start("dag-processor", "dag-processor")
        self.start("worker-default", "celery", "worker", "--queues", "default", "--concurrency", "2",
                   "--celery-hostname", "default@%h", AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()))
        self.start("worker-gpu", "celery", "worker", "--queues", "gpu", "--concurrency", "1",
                   "--celery-hostname", "gpu@%h", AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()))
        self.wait_for(lambda: self._get("/api/v2/monitor/health", auth=False) is not None, 180, "api-server health")
        passwords = self.airflow_home("api-server") / "simple_auth_manager_passwords.json.generated"
        password = json.loads(passwords.read_text())["admin"]
        token = self._post("/auth/token", {"username": "admin", "password": password}, auth=False)
        self.token = token["access_token"]

    def down(self) -> None:
        self.children.stop(grace=30)

    def logs(self, tail: int = 3000) -> str:
        return self.children.logs(tail)

    def wait_for(self, check, timeout: float, what: str, every: float = 2.0):
        return self.children.wait_for(check, timeout, what, every)

    # --- REST, as the UI does it ---------------------------------------------------------------
    def _request(self, method: str, path: str, body=None, auth: bool = True):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def _get(self, path: str, auth: bool = True):
        try:
            return self._request("GET", path, auth=auth)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def _post(self, path: str, body, auth: bool = True):
        return self._request("POST", path, body, auth=auth)

    def unpause(self, dag_id: str) -> None:
        self.wait_for(lambda: self._get(f"/api/v2/dags/{dag_id}"), 180, f"{dag_id} to be parsed")
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def runs(self, dag_id: str) -> list[dict]:
        return (self._get(f"/api/v2/dags/{dag_id}/dagRuns?limit=100") or {}).get("dag_runs", [])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self._get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances") or {}
        return {t["task_id"]: t["state"] for t in tis.get("task_instances", [])}

    def trigger(self, dag_id: str, conf: dict) -> str:
        self.unpause(dag_id)
        run = self._post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        def done():
            run = self._get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}")
            return run and run["state"] in ("success", "failed") and run["state"]

        return self.wait_for(done, timeout, f"dag run {run_id}", every=3)
