"""Environment for running the project's DAGs with a real Airflow in a child process.

Used by ``make demo`` and the end-to-end tests: Airflow's own metadata DB is SQLite under
``PAINTING_HOME/airflow`` (enough for ``airflow dags test``), the DAGS_FOLDER is this repo's
``dags/``, and the painting database URL is passed through ``PAINTING_DB_URL``. ``make airflow``
(:mod:`painting_ml.orchestration.local_server`) starts from the same environment and swaps in a
PostgreSQL metadata database and the LocalExecutor.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from painting_ml.core.settings import Settings


def airflow_env(settings: Settings, db_url: str, airflow_home: Path | None = None) -> dict[str, str]:
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
                capture: bool = False) -> subprocess.CompletedProcess:
    """Run ``airflow <args>``; raise CalledProcessError on failure."""
    return subprocess.run([airflow_bin(), *args], env=env, check=True, timeout=timeout,
                          capture_output=capture, text=True)
