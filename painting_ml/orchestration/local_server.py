"""``make airflow``: the Airflow UI on this machine, in one command.

Starts ``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` as child
processes with the LocalExecutor. Airflow's metadata lives in a database of its own (``airflow``)
on the painting database's server — the embedded pgserver PostgreSQL under ``PAINTING_HOME``, or
the server ``PAINTING_DB_URL`` names — so the data home, the painting database and the generated
data folders are the ones ``make demo`` uses. The ``gpu`` pool is created (without it ``train`` is
never scheduled) and the results plugin in ``plugins/`` is loaded.

Sized to the machine: the LocalExecutor forks all of its ``[core] parallelism`` workers at start
(about 160 MB each) and a training task already uses every core, so parallelism and the default
pool get one slot per core (at least two, so a light task runs beside a training). The trigger
form starts from a preset of :data:`~painting_ml.core.config.PRESETS` — ``cpu`` unless the
deployment has its own ``PAINTING_RUN_DEFAULTS`` file — written to ``AIRFLOW_HOME`` and passed to
every child as ``PAINTING_RUN_DEFAULTS``; elsewhere the production recipe stays the default.
:func:`cli_environment` gives the variables that point the ``airflow`` CLI at the same database.

Each child runs in its own process group, so Ctrl-C reaches only this launcher, which then stops
the children by PID (SIGTERM, then SIGKILL after a grace period) and finally the embedded server.
"""

from __future__ import annotations

import json
import logging
import shlex
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from painting_ml.core import db
from painting_ml.core.config import PRESETS
from painting_ml.core.errors import PaintingMLError
from painting_ml.core.settings import PROJECT_ROOT, Settings, available_cores, get_settings
from painting_ml.orchestration.local_airflow import (
    Children,
    airflow_bin,
    airflow_env,
    api_server_env,
    database_url,
    ensure_database,
    free_port,
    new_secrets,
    reachable,
    run_airflow,
)
from painting_ml.orchestration.schedule import GPU_POOL

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The processes of a local Airflow, in start order.
PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
PLUGINS_DIR = PROJECT_ROOT / "plugins"
METADATA_DB = "airflow"
DEFAULT_POOL = "default_pool"
#: Chosen afresh for every process (free ports), so not part of :meth:`LocalAirflow.cli_env`.
_PER_PROCESS = ("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT")


def executor_slots(cores: int) -> int:
    """``[core] parallelism`` and the default pool's size on a machine with ``cores`` cores: one
    task per core, at least two."""
    return max(2, cores)


def default_preset(settings: Settings) -> str | None:
    """The preset a local Airflow starts with: ``cpu``, unless ``PAINTING_RUN_DEFAULTS`` names the
    deployment's own defaults file."""
    return None if settings.run_defaults_file is not None else "cpu"


def _persistent_secrets(home: Path) -> dict[str, str]:
    """:func:`new_secrets` kept in ``AIRFLOW_HOME`` so a restart keeps sessions and encrypted
    connections valid; generated on first use, readable by this user only."""
    path = home / "local_secrets.json"
    if path.is_file():
        values: dict[str, str] = json.loads(path.read_text())
        return values
    values = new_secrets()
    path.touch(mode=0o600)
    path.write_text(json.dumps(values))
    return values


@dataclass
class LocalAirflow:
    """A local Airflow (LocalExecutor) serving this repository's DAGs.

    Args:
        settings: where the data home and the DAGs are.
        painting_url: libpq URL of the painting database (passed to tasks as ``PAINTING_DB_URL``).
        metadata_url: libpq URL of Airflow's own database (must not be the painting one).
        port: the api-server's port (UI and REST API).
        home: ``AIRFLOW_HOME`` (the ``airflow_home`` attribute); defaults to ``$PAINTING_HOME/airflow``,
            the demo's.
        gpu_slots: size of the ``gpu`` pool (one slot per GPU).
        users: simple auth manager users, ``name:role`` comma-separated.
        extra_env: more environment for every child (tests shorten the parse intervals).
        preset: the :data:`~painting_ml.core.config.PRESETS` entry the trigger form starts from
            (written to ``<home>/<preset>-preset.yaml``, the children's ``PAINTING_RUN_DEFAULTS``);
            None: the settings' own defaults.
        cores: the CPU cores the executor is sized for (:func:`executor_slots`).
    """

    settings: Settings
    painting_url: str
    metadata_url: str
    port: int = 8080
    home: InitVar[Path | None] = None
    gpu_slots: int = 1
    users: str = "admin:admin"
    extra_env: dict[str, str] = field(default_factory=dict)
    preset: str | None = None
    cores: int = field(default_factory=available_cores)

    def __post_init__(self, home: Path | None) -> None:
        if self.preset is not None and self.preset not in PRESETS:
            raise PaintingMLError(f"no preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        self.airflow_home = Path(home or self.settings.airflow_home)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_dir = self.airflow_home / "local-logs"
        self.children = Children(self.log_dir)
        self.slots = executor_slots(self.cores)

    @property
    def preset_file(self) -> Path | None:
        """The defaults file the preset is written to, or None without a preset."""
        return None if self.preset is None else self.airflow_home / f"{self.preset}-preset.yaml"

    def _write_preset(self) -> None:
        import yaml

        path = self.preset_file
        assert path is not None and self.preset is not None
        header = (f"# The trigger form's defaults of `painting-ml airflow`: the {self.preset} preset "
                  f"(painting_ml.core.config.PRESETS), rewritten at every start.\n"
                  "# `painting-ml airflow --preset none` starts with the production recipe instead.\n")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + yaml.safe_dump(PRESETS[self.preset], sort_keys=False))

    def defaults_line(self) -> str:
        """Which defaults the trigger form starts from, in words."""
        if self.preset is not None:
            return f"the {self.preset} preset (PAINTING_RUN_DEFAULTS={self.preset_file})"
        from painting_ml.orchestration.params import describe_defaults

        return describe_defaults(self.settings)

    @property
    def procs(self) -> dict[str, Any]:
        """The running children by name."""
        return self.children.procs

    def build_env(self) -> dict[str, str]:
        """The environment of every child (log-server ports are picked afresh on each call)."""
        env = airflow_env(self.settings, self.painting_url, self.airflow_home)
        env.update(api_server_env(self.base_url, self.metadata_url, _persistent_secrets(self.airflow_home), self.users))
        env.update({
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.slots),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_DIR),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # Free ports, so a second Airflow on this machine (a test, a Celery worker) never clashes.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        })
        if self.preset is not None:
            self._write_preset()
            env["PAINTING_RUN_DEFAULTS"] = str(self.preset_file)
        env.update(self.extra_env)
        return env

    def cli_env(self) -> dict[str, str]:
        """The variables that make the ``airflow`` CLI (and ``painting-ml``) use this Airflow's
        metadata database, DAGs, run defaults and painting database: every ``AIRFLOW*`` and
        ``PAINTING_*`` variable of :meth:`build_env` but the per-process log-server ports."""
        return {k: v for k, v in sorted(self.build_env().items())
                if k.startswith(("AIRFLOW_", "PAINTING_")) and k not in _PER_PROCESS}

    @property
    def passwords_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    def password(self, user: str = "admin") -> str:
        """The login password the simple auth manager generated for ``user`` (kept across restarts)."""
        return json.loads(self.passwords_file.read_text())[user]

    def start(self, timeout: float = 240) -> None:
        """Migrate the metadata DB, create the pool, start the processes, wait until the UI answers."""
        if reachable("127.0.0.1", self.port):
            raise PaintingMLError(f"port {self.port} is in use; stop what listens there or pass --port")
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        env = self.build_env()
        run_airflow(["db", "migrate"], env, timeout=600, capture=True)
        run_airflow(["pools", "set", GPU_POOL, str(self.gpu_slots), "one slot per GPU of the gpu workers"], env,
                    timeout=300, capture=True)
        run_airflow(["pools", "set", DEFAULT_POOL, str(self.slots), "one slot per CPU core of this machine"], env,
                    timeout=300, capture=True)
        for name in PROCESSES:
            args = [name, "--host", "127.0.0.1", "--port", str(self.port)] if name == "api-server" else [name]
            self.children.start(name, [airflow_bin(), *args], env)
        self.wait_for(self.healthy, timeout, "the api-server and scheduler to report healthy")

    def health(self) -> dict[str, Any] | None:
        """``/api/v2/monitor/health`` (no login needed), or None while the api-server is not up."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as resp:
                health: dict[str, Any] = json.loads(resp.read())
                return health
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            return None

    def healthy(self) -> bool:
        h = self.health()
        return h is not None and all(h.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler"))

    def logs(self, tail: int = 3000) -> str:
        return self.children.logs(tail)

    def dead(self) -> list[str]:
        return self.children.dead()

    def wait_for(self, check: Callable[[], T], timeout: float, what: str, every: float = 2.0) -> T:
        """Poll ``check`` until it returns something truthy; fail early when a child died."""
        return self.children.wait_for(check, timeout, what, every)

    def stop(self, grace: float = 30) -> None:
        """SIGTERM every child's process group, newest first; SIGKILL what is left after ``grace``."""
        self.children.stop(grace)


def create_local_airflow(settings: Settings | None = None, port: int = 8080, gpu_slots: int = 1,
                         preset: str | None = None) -> LocalAirflow:
    """The ``make airflow`` setup: painting database migrated, Airflow's own database beside it."""
    settings = settings or get_settings()
    painting_url = db.resolve_url(settings)  # starts the embedded server when PAINTING_DB_URL is unset
    db.migrate(painting_url)
    metadata_url = ensure_database(painting_url, METADATA_DB)
    return LocalAirflow(settings, painting_url, metadata_url, port=port, gpu_slots=gpu_slots, preset=preset)


def cli_environment(port: int = 8080, preset: str | None = None, settings: Settings | None = None) -> str:
    """``export`` lines that point the ``airflow`` CLI in a shell at the local Airflow on ``port``
    (``eval "$(painting-ml airflow --print-env)"``): its metadata database, DAGs and run defaults.

    Raises:
        PaintingMLError: the embedded PostgreSQL is not running (it lives as long as the UI does).
    """
    settings = settings or get_settings()
    if settings.db_url is None and not (settings.pgdata_dir / "postmaster.pid").is_file():
        raise PaintingMLError(f"the embedded PostgreSQL under {settings.pgdata_dir} is not running, so the airflow "
                              "CLI would find no database; start `make airflow` first and run this in another shell, "
                              "or set PAINTING_DB_URL")
    painting_url = db.resolve_url(settings)
    local = LocalAirflow(settings, painting_url, database_url(painting_url, METADATA_DB), port=port, preset=preset)
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in local.cli_env().items())


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(port: int = 8080, gpu_slots: int = 1, preset: str | None = None) -> None:
    """Run a local Airflow in the foreground until Ctrl-C (or SIGTERM), then stop all of it.

    Args:
        port: the api-server's port.
        gpu_slots: size of the ``gpu`` pool.
        preset: the trigger form's preset; None: none (the settings' own defaults).
    """
    settings = get_settings()
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # its start-up chatter is not for this console
    airflow = create_local_airflow(settings, port=port, gpu_slots=gpu_slots, preset=preset)
    print(f"[airflow] data home {settings.home}; painting database {db.redact_url(airflow.painting_url)}", flush=True)
    print(f"[airflow] migrating Airflow's database and starting api-server, scheduler, dag-processor, "
          f"triggerer (LocalExecutor, {airflow.slots} workers and default_pool slots for {airflow.cores} cores) ...",
          flush=True)
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
        other = "--preset none for the production recipe" if preset else "--preset cpu for the CPU preset"
        print(f"[airflow] trigger form defaults: {airflow.defaults_line()} ({other})")
        print(f"[airflow] the airflow CLI on this database: eval \"$(painting-ml airflow --port {port} --print-env)\"")
        print(f"[airflow] process logs in {airflow.log_dir}; press Ctrl-C to stop everything", flush=True)
        while not airflow.dead():
            time.sleep(1)
        print(f"[airflow] {', '.join(airflow.dead())} exited unexpectedly:\n{airflow.logs()}", flush=True)
    except KeyboardInterrupt:
        print("\n[airflow] stopping ...", flush=True)
    finally:
        airflow.stop()
        print("[airflow] stopped", flush=True)
