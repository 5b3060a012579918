"""Shared fixtures: a throw-away painting database on the real server, a temp PAINTING_HOME and
generated datasets.

The server is the one named by ``PAINTING_DB_URL`` (CI sets it to the machine's PostgreSQL) or,
when that is unset, the embedded pgserver one. Each test session creates its own database and
drops it at the end, so tests never touch user data.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def _retrain_cron_far_from_now() -> str:
    """A weekly PAINTING_RETRAIN_CRON whose last point is 3.5-4 days ago and next 2.5-3 days ahead.

    On unpause, Airflow schedules a DAG's most recent past cron point when it fired within a tenth
    of the cron's interval (16.8 h for the weekly default, Monday 03:00 UTC): tests that unpause
    painting_retrain on a Monday morning would get a scheduled run with the production recipe
    beside their own manual ones."""
    from datetime import datetime, timezone

    cron_weekday = (datetime.now(timezone.utc).weekday() + 1 + 3) % 7  # cron: 0 = Sunday
    return f"0 12 * * {cron_weekday}"


os.environ.setdefault("PAINTING_RETRAIN_CRON", _retrain_cron_far_from_now())


@pytest.fixture(scope="session")
def painting_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("painting_home")
    os.environ["PAINTING_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def server_url(painting_home) -> str:
    """libpq URL of a database on the server the tests may create databases on."""
    from painting_ml.core import db

    base = os.environ.get("PAINTING_DB_URL")
    if base:
        return db.normalize_url(base)
    return db.start_embedded_server(painting_home / "pgdata")


@pytest.fixture(scope="session")
def db_url(server_url, painting_home) -> str:
    """A fresh database for this test session, with the schema applied; dropped at the end."""
    from painting_ml.core import db
    from painting_ml.core import settings

    url = db.create_database(server_url, "pm_test")
    os.environ["PAINTING_DB_URL"] = url
    settings.reload_settings()
    db.migrate(url)
    yield url
    db.drop_database(server_url, url)


TABLES = ["champion", "promotions", "artifacts", "predictions", "class_metrics", "confusion", "verification",
          "epochs", "runs", "augmented_images",
          "dataset_items", "dataset_versions", "rejects", "paintings", "ingest_state", "ingest_files", "image_cache"]


@pytest.fixture
def clean_db(db_url) -> str:
    """The test database, emptied before the test."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    return db_url


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """3 artists (+1 test-only) × 12 paintings at 48 px, with 3 broken files and 1 missing."""
    from painting_ml.data.synth import generate

    out = tmp_path_factory.mktemp("tiny") / "data"
    generate(out, artists=3, per_artist=12, size=48, seed=7, test_only_artists=1, broken=3)
    return out


def tiny_run_config(data_dir, **overrides):
    """The small CPU config the trained-run fixtures share (resnet18, 32 px, one epoch, no wandb)."""
    from painting_ml.core.config import CPU_DEMO, RunConfig

    base = {**CPU_DEMO, "data_dir": str(data_dir), "n_artists": 3, "backbone": "resnet18", "image_size": 32,
            "batch_size": 16, "epochs": 1, "online_augment": False, "augment": (), "wandb": False,
            "head_units": 16, "early_stopping_patience": 0, "min_macro_f1": 0.0}
    return RunConfig(**{**base, **overrides})


def champion_of(url: str) -> int | None:
    """The run the champion pointer names, or None."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT run_id FROM champion").fetchone()
        return row[0] if row else None


def stored(key: str) -> Path:
    """This host's path of an artifact-store key (the tests' store is the local one under PAINTING_HOME)."""
    from painting_ml.core.store import get_store

    assert key and not key.startswith("/"), f"{key!r} is a host path, not a store key"
    return get_store().local_path(key)


def empty_catalog(db_url) -> None:
    """Start a module's trained run from an empty catalog (no other module's runs or versions)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE paintings, rejects, dataset_versions, runs RESTART IDENTITY CASCADE")
