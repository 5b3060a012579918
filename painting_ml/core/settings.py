"""Environment variables, read once, typed, with defaults.

Everything the process learns from its environment goes through :func:`get_settings`; the rest of
the library receives a :class:`Settings` (or values taken from it) instead of calling ``os.getenv``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from painting_ml.core.errors import ConfigError

#: Repository root: ``sql/`` and ``dags/`` live beside the package (editable install).
PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: The file name Keras gives ResNet50's ImageNet weights without the classifier top
#: (``keras.applications.ResNet50(include_top=False, weights="imagenet")`` downloads it to
#: ``~/.keras/models/``): what a deployment puts on its weights volume.
RESNET50_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET50_NOTOP_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/resnet/{RESNET50_NOTOP_FILE}"


@dataclass(frozen=True)
class Settings:
    """Process-wide settings.

    Attributes:
        home: ``PAINTING_HOME``; data, artifacts, the embedded database and Airflow's home live here.
        db_url: ``PAINTING_DB_URL``; ``None`` means "start the embedded pgserver PostgreSQL".
        wandb_mode: ``WANDB_MODE``; ``offline`` unless the user opts in to ``online``.
        sql_dir: folder holding ``migrations/``, ``views.sql``, the named statements and ``queries/``.
        dags_dir: folder holding the DAG files.
        default_data_dir: ``PAINTING_DATA_DIR``; the Kaggle-layout folder that scheduled runs read
            when no ``data_dir`` is given (default ``$PAINTING_HOME/data/demo``, where ``make demo``
            generates its set). A run's own folder is ``RunConfig.data_dir``.
        retrain_cron: ``PAINTING_RETRAIN_CRON``; when scheduled retraining runs (weekly by default).
        ingest_schedule: ``PAINTING_INGEST_SCHEDULE``; how often painting_ingest looks for changes.
        ingest_quiet_seconds: ``PAINTING_INGEST_QUIET_SECONDS``; painting_ingest scans the folder
            twice this many seconds apart and ingests only when nothing changed in between (a
            folder still being copied is left alone). 0 turns the check off.
        weights: ``PAINTING_WEIGHTS``; the default backbone weights of a run: a file path (default
            ``$PAINTING_WEIGHTS_DIR/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``, the
            weights volume, ``$PAINTING_HOME/weights`` unless set), ``imagenet`` where downloads
            work, or ``none`` for random init.
        run_defaults_file: ``PAINTING_RUN_DEFAULTS``; a JSON or YAML file of config keys that
            override the schema's defaults for this deployment (read when the DAG is parsed).
        alert_email: ``PAINTING_ALERT_EMAIL``; comma-separated recipients of failure, success and
            promotion mails; empty (the default) turns alerts off.
        alert_smtp_conn: ``PAINTING_ALERT_SMTP_CONN``; the Airflow SMTP connection id the mails go
            through (``smtp_default``; e.g. ``AIRFLOW_CONN_SMTP_DEFAULT`` in the environment).
        alert_from: ``PAINTING_ALERT_FROM``; the sender (default: the connection's ``from_email``).
        workers: ``PAINTING_WORKERS``; how many images ingest probes and offline augmentation
            transforms at once (default: the CPU cores this process may run on).
        artifacts_url: ``PAINTING_ARTIFACTS_URL``; the artifact store every host reads and writes
            (models, image copies, plots, mosaics, reports): a local folder (default
            ``$PAINTING_HOME/artifacts``) or ``s3://bucket/prefix`` on a cluster.
        artifacts_endpoint: ``PAINTING_ARTIFACTS_ENDPOINT``; the S3 API endpoint of an S3-compatible
            store (MinIO, Ceph, a moto server); unset: AWS. Credentials come from the usual AWS
            variables (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``) or the instance profile.
        keep_runs: ``PAINTING_KEEP_RUNS``; retention: the newest runs whose files gc keeps (besides
            the champion and every run a promotion decision references).
    """

    home: Path
    db_url: str | None
    wandb_mode: str
    sql_dir: Path
    dags_dir: Path
    default_data_dir: Path | None = None
    retrain_cron: str = "0 3 * * 1"
    ingest_schedule: str = "@hourly"
    ingest_quiet_seconds: float = 60.0
    weights: str | None = None
    run_defaults_file: Path | None = None
    alert_email: tuple[str, ...] = ()
    alert_smtp_conn: str = "smtp_default"
    alert_from: str | None = None
    workers: int = 1
    artifacts_url: str = ""
    artifacts_endpoint: str | None = None
    keep_runs: int = 10

    @property
    def generated_data_dir(self) -> Path:
        """Where data folders the project generates (``painting-ml synth``, the demo) live."""
        return self.home / "data"

    @property
    def artifacts_dir(self) -> Path:
        """The local artifact store's folder (the default ``PAINTING_ARTIFACTS_URL``)."""
        return self.home / "artifacts"

    @property
    def scratch_dir(self) -> Path:
        """This host's working copies of a remote store's files (never shared between hosts)."""
        return self.home / "scratch"

    @property
    def pgdata_dir(self) -> Path:
        return self.home / "pgdata"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"


def _read() -> Settings:
    home = Path(os.environ.get("PAINTING_HOME", "./var")).expanduser().resolve()
    db_url = os.environ.get("PAINTING_DB_URL") or None
    wandb_mode = os.environ.get("WANDB_MODE", "offline")
    if wandb_mode not in {"offline", "online", "disabled"}:
        raise ConfigError(
            f"WANDB_MODE={wandb_mode!r} is not valid; use offline (default), online or disabled"
        )
    weights_dir = Path(os.environ.get("PAINTING_WEIGHTS_DIR") or home / "weights").expanduser()
    weights = os.environ.get("PAINTING_WEIGHTS") or str(weights_dir / RESNET50_NOTOP_FILE)
    defaults_file = os.environ.get("PAINTING_RUN_DEFAULTS") or None
    return Settings(
        home=home,
        db_url=db_url,
        wandb_mode=wandb_mode,
        sql_dir=Path(os.environ.get("PAINTING_SQL_DIR") or PROJECT_ROOT / "sql"),
        dags_dir=PROJECT_ROOT / "dags",
        default_data_dir=Path(os.environ["PAINTING_DATA_DIR"]).expanduser() if os.environ.get("PAINTING_DATA_DIR")
        else home / "data" / "demo",
        # An empty variable (compose's ${X:-}) means "not set": the default, not an empty schedule.
        retrain_cron=os.environ.get("PAINTING_RETRAIN_CRON") or "0 3 * * 1",
        ingest_schedule=os.environ.get("PAINTING_INGEST_SCHEDULE") or "@hourly",
        ingest_quiet_seconds=_number("PAINTING_INGEST_QUIET_SECONDS", 60.0),
        weights=None if weights.lower() == "none" else weights,
        run_defaults_file=Path(defaults_file).expanduser() if defaults_file else None,
        alert_email=tuple(a.strip() for a in os.environ.get("PAINTING_ALERT_EMAIL", "").split(",") if a.strip()),
        alert_smtp_conn=os.environ.get("PAINTING_ALERT_SMTP_CONN") or "smtp_default",
        alert_from=os.environ.get("PAINTING_ALERT_FROM") or None,
        workers=_workers(),
        artifacts_url=os.environ.get("PAINTING_ARTIFACTS_URL") or (home / "artifacts").as_uri(),
        artifacts_endpoint=os.environ.get("PAINTING_ARTIFACTS_ENDPOINT") or None,
        keep_runs=_count("PAINTING_KEEP_RUNS", 10),
    )


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which containers and ``taskset``
    narrow), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _workers() -> int:
    return _count("PAINTING_WORKERS", available_cores(), minimum=1,
                  unset=f" (unset: the {available_cores()} cores this process may use)")


def _count(name: str, default: int, minimum: int = 0, unset: str = "") -> int:
    """A whole-number variable of at least ``minimum``; ``default`` when unset or empty."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; use {minimum} or more{unset}") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}{unset}")
    return value


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} is negative; use 0 or more seconds")
    return value


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the settings, reading the environment on first call only."""
    return _read()


def reload_settings() -> Settings:
    """Forget the cached settings and read the environment again (tests, the demo driver)."""
    get_settings.cache_clear()
    return get_settings()
