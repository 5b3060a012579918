"""A real Airflow CeleryExecutor cluster on this machine, for the integration test.

PostgreSQL metadata database (created fresh on the PAINTING_DB_URL server), Redis broker,
`airflow api-server`, scheduler, dag-processor and two Celery workers: one for queue `default`,
one for queue `gpu`. Every process runs in its own process group and is stopped by PID.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from painting_ml.orchestration.local_server import wait_until

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sqlalchemy_url(conninfo: str) -> str:
    """A libpq conninfo (``host=... dbname=...`` or a URL) as a SQLAlchemy psycopg URL."""
    from urllib.parse import quote

    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = quote(info.get("user", "postgres"))
    auth = f"{user}:{quote(info['password'])}@" if info.get("password") else f"{user}@"
    host = info.get("host", "127.0.0.1")
    if host.startswith("/"):  # a unix socket folder (the embedded pgserver)
        return f"postgresql+psycopg://{auth}/{info['dbname']}?host={quote(host)}"
    return f"postgresql+psycopg://{auth}{host}:{info.get('port', 5432)}/{info['dbname']}"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


class Cluster:
    def __init__(self, home: Path, metadata_url: str, painting_db_url: str, painting_home: Path,
                 broker_url: str = "redis://127.0.0.1:6379/5", data_dir: Path | None = None):
        from cryptography.fernet import Fernet

        self.home = home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        sqla = sqlalchemy_url(metadata_url)
        self.metadata_url = metadata_url
        self.env = dict(os.environ)
        self.env.update({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqla,
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{sqla}",
            "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"result_extended": True}),
            "AIRFLOW__API__BASE_URL": self.base,
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "900",
            "PAINTING_DB_URL": painting_db_url,
            "PAINTING_HOME": str(painting_home),
            "WANDB_MODE": "disabled",
            **({"PAINTING_DATA_DIR": str(data_dir)} if data_dir else {}),
            "PAINTING_INGEST_QUIET_SECONDS": "0",  # the watched folder is copied just before; no copy runs
            "TF_CPP_MIN_LOG_LEVEL": "2",
        })
        self.airflow = str(Path(sys.executable).with_name("airflow"))

    def run(self, *args: str, timeout: float = 300) -> str:
        out = subprocess.run([self.airflow, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if out.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
        return out.stdout

    def start(self, name: str, *args: str, **extra_env: str) -> None:
        log = open(self.home / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen([self.airflow, *args], env={**self.env, **extra_env}, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def up(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.run("db", "migrate", timeout=600)
        self.run("pools", "set", "gpu", "1", "one slot per GPU")
        self.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.port))
        self.start("scheduler", "scheduler")
        self.start("dag-processor", "dag-processor")
        self.start("worker-default", "celery", "worker", "--queues", "default", "--concurrency", "2",
                   "--celery-hostname", "default@%h", AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()))
        self.start("worker-gpu", "celery", "worker", "--queues", "gpu", "--concurrency", "1",
                   "--celery-hostname", "gpu@%h", AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()))
        self.wait_for(lambda: self._get("/api/v2/monitor/health", auth=False) is not None, 180, "api-server health")
        password = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        token = self._post("/auth/token", {"username": "admin", "password": password}, auth=False)
        self.token = token["access_token"]

    def down(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}" for p in sorted(self.home.glob("*.log")))

    def wait_for(self, check, timeout: float, what: str, every: float = 2.0):
        return wait_until(check, timeout, what, procs=self.procs, logs=self.logs, every=every)

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
        from urllib.parse import quote

        tis = self._get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances") or {}
        return {t["task_id"]: t["state"] for t in tis.get("task_instances", [])}

    def trigger(self, dag_id: str, conf: dict) -> str:
        self.unpause(dag_id)
        run = self._post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        from urllib.parse import quote

        def done():
            run = self._get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id)}")
            return run and run["state"] in ("success", "failed") and run["state"]

        return self.wait_for(done, timeout, f"dag run {run_id}", every=3)
