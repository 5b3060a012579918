"""``make airflow``: the Airflow UI on this machine, in one command.

Starts ``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` as child
processes with the LocalExecutor. Airflow's metadata lives in a database of its own (``airflow``)
on the painting database's server — the embedded pgserver PostgreSQL under ``PAINTING_HOME``, or
the server ``PAINTING_DB_URL`` names — so the data home, the painting database and the generated
data folders are the ones ``make demo`` uses. The ``gpu`` pool is created (without it ``train`` is
never scheduled) and the results plugin in ``plugins/`` is loaded.

Each child runs in its own process group, so Ctrl-C reaches only this launcher, which then stops
the children by PID (SIGTERM, then SIGKILL after a grace period) and finally the embedded server.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import psycopg.sql

from painting_ml.core import db
from painting_ml.core.errors import PaintingMLError
from painting_ml.core.settings import PROJECT_ROOT, Settings, get_settings
from painting_ml.orchestration.local_airflow import airflow_bin, airflow_env
from painting_ml.orchestration.schedule import GPU_POOL

log = logging.getLogger(__name__)

#: The processes of a local Airflow, in start order: name -> ``airflow`` arguments.
PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
PLUGINS_DIR = PROJECT_ROOT / "plugins"
METADATA_DB = "airflow"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def sqlalchemy_url(conninfo: str) -> str:
    """A libpq URL or conninfo as the SQLAlchemy psycopg URL Airflow wants (unix sockets kept)."""
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = quote(info.get("user") or "postgres")
    auth = f"{user}:{quote(info['password'])}@" if info.get("password") else f"{user}@"
    host = info.get("host") or "127.0.0.1"
    if host.startswith("/"):  # the embedded pgserver listens on a unix socket folder
        return f"postgresql+psycopg://{auth}/{info['dbname']}?host={quote(host)}"
    return f"postgresql+psycopg://{auth}{host}:{info.get('port') or 5432}/{info['dbname']}"


def ensure_database(server_url: str, name: str) -> str:
    """Create database ``name`` on ``server_url``'s server unless it exists; return its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


def _persistent_secrets(home: Path) -> dict[str, str]:
    """Fernet key, JWT secret and API secret kept in ``AIRFLOW_HOME`` so a restart keeps sessions
    and encrypted connections valid; generated on first use, readable by this user only."""
    from cryptography.fernet import Fernet

    path = home / "local_secrets.json"
    if path.is_file():
        return json.loads(path.read_text())
    values = {"fernet_key": Fernet.generate_key().decode(), "jwt_secret": secrets.token_hex(48),
              "secret_key": secrets.token_hex(32)}
    path.touch(mode=0o600)
    path.write_text(json.dumps(values))
    return values


def wait_until(check, timeout: float, what: str, *, procs: dict, logs, every: float = 2.0):
    """Poll ``check`` until it returns something truthy and return that; fail early, with the
    children's logs, when one of ``procs`` (name -> Popen) exited, and after ``timeout`` seconds.
    Shared by :class:`LocalAirflow` and the Celery-cluster test harness (tests/cluster.py)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            raise PaintingMLError(f"{', '.join(dead)} exited while waiting for {what}:\n{logs()}")
        value = check()
        if value:
            return value
        time.sleep(every)
    raise PaintingMLError(f"timed out after {timeout:.0f} s waiting for {what}:\n{logs()}")


@dataclass
class LocalAirflow:
    """A local Airflow (LocalExecutor) serving this repository's DAGs.

    Args:
        settings: where the data home and the DAGs are.
        painting_url: libpq URL of the painting database (passed to tasks as ``PAINTING_DB_URL``).
        metadata_url: libpq URL of Airflow's own database (must not be the painting one).
        port: the api-server's port (UI and REST API).
        home: ``AIRFLOW_HOME``; defaults to ``$PAINTING_HOME/airflow``, the demo's.
        gpu_slots: size of the ``gpu`` pool (one slot per GPU).
        users: simple auth manager users, ``name:role`` comma-separated.
        extra_env: more environment for every child (tests shorten the parse intervals).
    """

    settings: Settings
    painting_url: str
    metadata_url: str
    port: int = 8080
    home: Path | None = None
    gpu_slots: int = 1
    users: str = "admin:admin"
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.home = Path(self.home or self.settings.airflow_home)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_dir = self.home / "local-logs"

    def build_env(self) -> dict[str, str]:
        """The environment of every child (log-server ports are picked afresh on each call)."""
        keys = _persistent_secrets(self.home)
        env = airflow_env(self.settings, self.painting_url, self.home)
        sqla = sqlalchemy_url(self.metadata_url)
        env.update({
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqla,
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_DIR),
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": self.users,
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            # Free ports, so a second Airflow on this machine (a test, a Celery worker) never clashes.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        })
        env.update(self.extra_env)
        return env

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def password(self, user: str = "admin") -> str:
        """The login password the simple auth manager generated for ``user`` (kept across restarts)."""
        return json.loads(self.passwords_file.read_text())[user]

    def start(self, timeout: float = 240) -> None:
        """Migrate the metadata DB, create the pool, start the processes, wait until the UI answers."""
        if port_in_use(self.port):
            raise PaintingMLError(f"port {self.port} is in use; stop what listens there or pass --port")
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self.build_env()
        self._run(["db", "migrate"], env, timeout=600)
        self._run(["pools", "set", GPU_POOL, str(self.gpu_slots), "one slot per GPU of the gpu workers"], env)
        for name in PROCESSES:
            args = [name, "--host", "127.0.0.1", "--port", str(self.port)] if name == "api-server" else [name]
            out = open(self.log_dir / f"{name}.log", "w")
            # Own process group: Ctrl-C in the terminal reaches only the launcher, which stops
            # each child in order instead of all of them racing at once.
            self.procs[name] = subprocess.Popen([airflow_bin(), *args], env=env, stdout=out,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_for(self.healthy, timeout, "the api-server and scheduler to report healthy")

    def _run(self, args: list[str], env: dict[str, str], timeout: float = 300) -> None:
        done = subprocess.run([airflow_bin(), *args], env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise PaintingMLError(f"airflow {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")

    def health(self) -> dict | None:
        """``/api/v2/monitor/health`` (no login needed), or None while the api-server is not up."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            return None

    def healthy(self) -> bool:
        h = self.health()
        return bool(h) and all(h.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler"))

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
                         for p in sorted(self.log_dir.glob("*.log")))

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def wait_for(self, check, timeout: float, what: str, every: float = 2.0):
        """Poll ``check`` until it returns something truthy; fail early when a child died."""
        return wait_until(check, timeout, what, procs=self.procs, logs=self.logs, every=every)

    def stop(self, grace: float = 30) -> None:
        """SIGTERM every child's process group, newest first; SIGKILL what is left after ``grace``."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        self.procs.clear()


def create_local_airflow(settings: Settings | None = None, port: int = 8080, gpu_slots: int = 1) -> LocalAirflow:
    """The ``make airflow`` setup: painting database migrated, Airflow's own database beside it."""
    settings = settings or get_settings()
    painting_url = db.resolve_url(settings)  # starts the embedded server when PAINTING_DB_URL is unset
    db.migrate(painting_url)
    metadata_url = ensure_database(painting_url, METADATA_DB)
    return LocalAirflow(settings, painting_url, metadata_url, port=port, gpu_slots=gpu_slots)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(port: int = 8080, gpu_slots: int = 1) -> None:
    """Run a local Airflow in the foreground until Ctrl-C (or SIGTERM), then stop all of it."""
    settings = get_settings()
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # its start-up chatter is not for this console
    airflow = create_local_airflow(settings, port=port, gpu_slots=gpu_slots)
    print(f"[airflow] data home {settings.home}; painting database {db.redact_url(airflow.painting_url)}", flush=True)
    print("[airflow] migrating Airflow's database and starting api-server, scheduler, dag-processor, "
          "triggerer (LocalExecutor) ...", flush=True)
    # SIGTERM (kill, a service manager) takes the same clean path as Ctrl-C; SIGINT is set too, as a
    # shell starting us in the background would have left it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        airflow.start()
        print(f"\n[airflow] Airflow UI: {airflow.base_url}  (also http://localhost:{port})")
        print(f"[airflow] login: admin / {airflow.password('admin')}   (kept in {airflow.passwords_file})")
        print(f"[airflow] DAGs from {settings.dags_dir}; the trigger form's data_dir defaults to "
              f"{settings.default_data_dir} (make demo generates it)")
        print(f"[airflow] process logs in {airflow.log_dir}; press Ctrl-C to stop everything", flush=True)
        while not airflow.dead():
            time.sleep(1)
        print(f"[airflow] {', '.join(airflow.dead())} exited unexpectedly:\n{airflow.logs()}", flush=True)
    except KeyboardInterrupt:
        print("\n[airflow] stopping ...", flush=True)
    finally:
        airflow.stop()
        print("[airflow] stopped", flush=True)
