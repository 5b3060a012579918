"""Environment variables, read once, typed, with defaults.

Everything the process learns from its environment goes through :func:`get_settings`; the rest of
the library receives a :class:`Settings` (or values taken from it) instead of calling ``os.getenv``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from painting_ml.exceptions import ConfigError

#: Repository root: ``sql/`` and ``dags/`` live beside the package (editable install).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Process-wide settings.

    Attributes:
        home: ``PAINTING_HOME``; data, artifacts, the embedded database and Airflow's home live here.
        db_url: ``PAINTING_DB_URL``; ``None`` means "start the embedded pgserver PostgreSQL".
        wandb_mode: ``WANDB_MODE``; ``offline`` unless the user opts in to ``online``.
        sql_dir: folder holding ``schema.sql``, ``views.sql`` and ``queries/``.
        dags_dir: folder holding the DAG files.
        source_dir: ``PAINTING_DATA_DIR``; the Kaggle-layout folder scheduled runs read
            (default ``$PAINTING_HOME/data/demo``, where ``make demo`` generates its set).
        retrain_cron: ``PAINTING_RETRAIN_CRON``; when scheduled retraining runs (weekly by default).
        ingest_schedule: ``PAINTING_INGEST_SCHEDULE``; how often painting_ingest looks for changes.
    """

    home: Path
    db_url: str | None
    wandb_mode: str
    sql_dir: Path
    dags_dir: Path
    source_dir: Path | None = None
    retrain_cron: str = "0 3 * * 1"
    ingest_schedule: str = "@hourly"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

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
    return Settings(
        home=home,
        db_url=db_url,
        wandb_mode=wandb_mode,
        sql_dir=Path(os.environ.get("PAINTING_SQL_DIR", PROJECT_ROOT / "sql")),
        dags_dir=PROJECT_ROOT / "dags",
        source_dir=Path(os.environ["PAINTING_DATA_DIR"]).expanduser() if os.environ.get("PAINTING_DATA_DIR")
        else home / "data" / "demo",
        retrain_cron=os.environ.get("PAINTING_RETRAIN_CRON", "0 3 * * 1"),
        ingest_schedule=os.environ.get("PAINTING_INGEST_SCHEDULE", "@hourly"),
    )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the settings, reading the environment on first call only."""
    return _read()


def reload_settings() -> Settings:
    """Forget the cached settings and read the environment again (tests, the demo driver)."""
    get_settings.cache_clear()
    return get_settings()
