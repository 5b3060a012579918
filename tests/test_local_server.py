"""`make airflow`'s building blocks (the whole launcher runs in tests/test_browser.py)."""

from __future__ import annotations

import json
import stat

import psycopg
import pytest

from painting_ml.orchestration.local_server import (LocalAirflow, _persistent_secrets, ensure_database,
                                                    sqlalchemy_url)


@pytest.mark.parametrize("conninfo, expected", [
    ("postgresql://postgres:@/postgres?host=/tmp/pm/pgdata", "postgresql+psycopg://postgres@/postgres?host=/tmp/pm/pgdata"),
    ("postgresql://postgres@127.0.0.1:5432/airflow", "postgresql+psycopg://postgres@127.0.0.1:5432/airflow"),
    ("postgresql://u:p%40ss@db/airflow", "postgresql+psycopg://u:p%40ss@db:5432/airflow"),
    ("host=/run/pg dbname=airflow user=me", "postgresql+psycopg://me@/airflow?host=/run/pg"),
])
def test_sqlalchemy_url_keeps_sockets_and_quotes_passwords(conninfo, expected):
    assert sqlalchemy_url(conninfo) == expected


def test_the_metadata_database_is_created_once_beside_the_painting_one(server_url):
    from painting_ml.core import db

    probe = db.create_database(server_url, "pm_probe")  # a unique name to create "again"
    name = psycopg.conninfo.conninfo_to_dict(probe)["dbname"]
    db.drop_database(server_url, probe)
    try:
        url = ensure_database(server_url, name)
        assert ensure_database(server_url, name) == url  # idempotent
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == name
    finally:
        db.drop_database(server_url, url)


def test_secrets_are_generated_once_and_private(tmp_path):
    first = _persistent_secrets(tmp_path)
    assert _persistent_secrets(tmp_path) == first and len(first["jwt_secret"]) >= 64
    assert stat.S_IMODE((tmp_path / "local_secrets.json").stat().st_mode) == 0o600
    assert json.loads((tmp_path / "local_secrets.json").read_text()) == first


def test_the_environment_points_airflow_at_its_own_database_and_this_repo(tmp_path, painting_home):
    from painting_ml.core.settings import reload_settings

    local = LocalAirflow(reload_settings(), "postgresql://p@h/painting", "postgresql://p@h/airflow", port=18123,
                         home=tmp_path / "airflow")
    local.home.mkdir(parents=True)
    env = local.build_env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg://p@h:5432/airflow"
    assert env["PAINTING_DB_URL"] == "postgresql://p@h/painting"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18123/execution/"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"].endswith("/plugins")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("/dags")
