"""Running the project's DAGs with a real Airflow in child processes on this machine.

One implementation of what every launcher needs, used by ``make demo`` and the end-to-end tests
(:func:`airflow_env`, :func:`run_airflow`: ``airflow dags test`` on a SQLite metadata DB under
``PAINTING_HOME/airflow``), by ``make airflow`` (:mod:`painting_ml.orchestration.local_server`) and by
the multi-host Celery cluster test (``tests/cluster.py``):

- free ports and reachability checks (:func:`free_port`, :func:`reachable`);
- a metadata database on a PostgreSQL server and its SQLAlchemy URL (:func:`ensure_database`,
  :func:`sqlalchemy_url`);
- the secrets and settings of an api-server-based Airflow (:func:`new_secrets`, :func:`api_server_env`);
- :class:`Children`: each child in its own process group with its own log file, waited on with the
  logs at hand, stopped by PID (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import psycopg
import psycopg.sql

from painting_ml.core.errors import PaintingMLError
from painting_ml.core.settings import Settings

T = TypeVar("T")


def airflow_env(settings: Settings, db_url: str, airflow_home: Path | None = None) -> dict[str, str]:
    """This process's environment for an ``airflow`` child: SQLite metadata DB under ``airflow_home``
    (default ``$PAINTING_HOME/airflow``), this repository's DAGs, the painting database ``db_url``."""
    home = Path(airflow_home or settings.airflow_home)
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PAINTING_HOME": str(settings.home),
        "PAINTING_DB_URL": db_url,
        "WANDB_MODE": settings.wandb_mode,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    })
    return env


def airflow_bin() -> str:
    """The ``airflow`` executable of this interpreter's environment."""
    return str(Path(sys.executable).with_name("airflow"))


def run_airflow(args: list[str], env: dict[str, str], timeout: float | None = None,
                capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``airflow <args>`` to completion.

    Raises:
        PaintingMLError: it exited non-zero (with the tail of its output when ``capture``).
    """
    done = subprocess.run([airflow_bin(), *args], env=env, timeout=timeout, capture_output=capture, text=True)
    if done.returncode:
        output = f":\n{done.stdout[-2000:]}{done.stderr[-3000:]}" if capture else " (its output is above)"
        raise PaintingMLError(f"airflow {' '.join(args)} failed with exit code {done.returncode}{output}")
    return done


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(host: str, port: int, timeout: float = 2) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def sqlalchemy_url(conninfo: str) -> str:
    """A libpq URL or conninfo as the SQLAlchemy psycopg URL Airflow wants (unix sockets kept)."""
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = quote(str(info.get("user") or "postgres"))
    auth = f"{user}:{quote(str(info['password']))}@" if info.get("password") else f"{user}@"
    host = str(info.get("host") or "127.0.0.1")
    if host.startswith("/"):  # the embedded pgserver listens on a unix socket folder
        return f"postgresql+psycopg://{auth}/{info['dbname']}?host={quote(host)}"
    return f"postgresql+psycopg://{auth}{host}:{info.get('port') or 5432}/{info['dbname']}"


def database_url(server_url: str, name: str) -> str:
    """The URL of database ``name`` on ``server_url``'s server (nothing is created)."""
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo("", **info)


def ensure_database(server_url: str, name: str) -> str:
    """Create database ``name`` on ``server_url``'s server unless it exists; return its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return database_url(server_url, name)


def new_secrets() -> dict[str, str]:
    """Fresh Fernet key, JWT secret (64+ bytes, as the api-server wants) and API secret key."""
    from cryptography.fernet import Fernet

    return {"fernet_key": Fernet.generate_key().decode(), "jwt_secret": secrets.token_hex(48),
            "secret_key": secrets.token_hex(32)}


def api_server_env(base_url: str, metadata_url: str, keys: dict[str, str],
                   users: str = "admin:admin") -> dict[str, str]:
    """The settings every process of an api-server-based Airflow shares: its metadata database, where
    workers reach the execution API, the secrets (:func:`new_secrets`) and the simple auth manager's
    users (``name:role`` comma-separated)."""
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(metadata_url),
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
    }


@dataclass
class Children:
    """Child processes, each in its own process group (Ctrl-C in a terminal reaches only the parent,
    which stops them in order) with its output in ``<log_dir>/<name>.log``.

    Args:
        log_dir: where each child's log file goes.
    """

    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        """Start ``argv`` as child ``name``, its stdout and stderr in ``<log_dir>/<name>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "wb") as log:
            self.procs[name] = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def dead(self) -> list[str]:
        """The children that exited."""
        return [name for name, proc in self.procs.items() if proc.poll() is not None]

    def logs(self, tail: int = 3000) -> str:
        """The last ``tail`` characters of every log in ``log_dir``."""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
                         for p in sorted(self.log_dir.glob("*.log")))

    def wait_for(self, check: Callable[[], T], timeout: float, what: str, every: float = 2.0) -> T:
        """Poll ``check`` until it returns something truthy and return that.

        Raises:
            PaintingMLError: a child exited first, or ``timeout`` seconds passed (with the logs).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = self.dead()
            if dead:
                raise PaintingMLError(f"{', '.join(dead)} exited while waiting for {what}:\n{self.logs()}")
            value = check()
            if value:
                return value
            time.sleep(every)
        raise PaintingMLError(f"timed out after {timeout:.0f} s waiting for {what}:\n{self.logs()}")

    def stop(self, grace: float = 30) -> None:
        """SIGTERM every child's process group, newest first; SIGKILL what is left after ``grace`` s."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # exited meanwhile
        os.killpg(proc.pid, sig)
