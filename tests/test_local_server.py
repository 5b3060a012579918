"""The launcher's building blocks, shared by `make airflow` and the Celery cluster test (the whole
launcher runs in tests/test_browser.py, the cluster in tests/test_celery_cluster.py): its
environment (machine-sized executor, the CPU preset, the CLI's view of it) and its processes."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from painting_ml.core.errors import PaintingMLError
from painting_ml.orchestration.local_airflow import (
    Children,
    ensure_database,
    free_port,
    reachable,
    run_airflow,
    sqlalchemy_url,
)
from painting_ml.orchestration.local_server import (
    LocalAirflow,
    _persistent_secrets,
    cli_environment,
    default_preset,
    executor_slots,
)

pytestmark = pytest.mark.e2e


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
    local.airflow_home.mkdir(parents=True)
    env = local.build_env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert "PAINTING_RUN_DEFAULTS" not in env or env["PAINTING_RUN_DEFAULTS"] == os.environ.get("PAINTING_RUN_DEFAULTS")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg://p@h:5432/airflow"
    assert env["PAINTING_DB_URL"] == "postgresql://p@h/painting"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18123/execution/"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"].endswith("/plugins")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("/dags")


@pytest.mark.parametrize("cores, slots", [(1, 2), (2, 2), (8, 8)])
def test_the_executor_and_the_default_pool_are_sized_to_the_cores(tmp_path, painting_home, cores, slots):
    """The LocalExecutor forks [core] parallelism workers at start: on 2 cores, 2 (tests/test_browser.py
    counts the processes of a started one)."""
    from painting_ml.core.settings import reload_settings

    assert executor_slots(cores) == slots
    local = LocalAirflow(reload_settings(), "postgresql://p@h/painting", "postgresql://p@h/airflow",
                         home=tmp_path / "airflow", cores=cores)
    assert local.slots == slots and local.build_env()["AIRFLOW__CORE__PARALLELISM"] == str(slots)


def test_the_cpu_preset_is_the_form_defaults_file_of_the_children(tmp_path, painting_home):
    from painting_ml.core.config import PRESETS, RunConfig, read_defaults_file
    from painting_ml.core.settings import Settings, reload_settings
    from painting_ml.orchestration.params import describe_defaults, preset_of

    settings = reload_settings()
    local = LocalAirflow(settings, "postgresql://p@h/painting", "postgresql://p@h/airflow",
                         home=tmp_path / "airflow", preset="cpu")
    env = local.build_env()
    path = Path(env["PAINTING_RUN_DEFAULTS"])
    assert path == tmp_path / "airflow" / "cpu-preset.yaml" and path.read_text().startswith("# ")
    values = read_defaults_file(path)
    assert preset_of(values) == "cpu" and set(values) == set(PRESETS["cpu"])
    # Sized for a laptop: random init, ResNet18, no gradient accumulation, a gate the demo set passes.
    cfg = RunConfig(data_dir="-", **values)
    assert (cfg.weights, cfg.backbone, cfg.gradient_accumulation_steps, cfg.min_split_paintings) == \
        (None, "resnet18", 1, 1)
    assert "the cpu preset (PAINTING_RUN_DEFAULTS=" in local.defaults_line()
    assert describe_defaults(Settings(home=tmp_path, PAINTING_RUN_DEFAULTS=str(path))).startswith("the cpu preset")
    assert describe_defaults(Settings(home=tmp_path)) == "the production recipe (no PAINTING_RUN_DEFAULTS file)"
    # A deployment's own defaults file wins over the preset; without one, the launcher starts with cpu.
    assert default_preset(Settings(home=tmp_path)) == "cpu"
    assert default_preset(Settings(home=tmp_path, PAINTING_RUN_DEFAULTS=str(path))) is None
    with pytest.raises(PaintingMLError, match="no preset 'gpu'; choose one of cpu"):
        LocalAirflow(settings, "postgresql://p@h/painting", "postgresql://p@h/airflow", preset="gpu")


def test_the_cli_environment_names_the_same_database_defaults_and_dags(tmp_path, server_url):
    """`painting-ml airflow --print-env`: export lines for the airflow CLI, as the UI's processes get them."""
    env = dict(os.environ, PAINTING_HOME=str(tmp_path), PAINTING_DB_URL=server_url)
    env.pop("PAINTING_RUN_DEFAULTS", None)
    cli = [sys.executable, "-m", "painting_ml.cli", "airflow", "--port", "18124", "--print-env"]
    out = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    lines = out.strip().splitlines()
    assert lines and all(line.startswith("export ") for line in lines)
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in lines)
    server = psycopg.conninfo.conninfo_to_dict(server_url)
    assert exported["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://")
    assert exported["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].split("?")[0].endswith(
        f"{server.get('port') or 5432}/airflow")
    assert exported["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert exported["AIRFLOW__CORE__DAGS_FOLDER"].endswith("/dags")
    assert exported["PAINTING_RUN_DEFAULTS"] == str(tmp_path / "airflow" / "cpu-preset.yaml")
    assert exported["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18124"
    assert not any("LOG_SERVER_PORT" in k for k in exported)
    none = subprocess.run([*cli, "--preset", "none"], env=env, capture_output=True, text=True, timeout=120,
                          check=True).stdout
    assert "PAINTING_RUN_DEFAULTS" not in none


def test_the_cli_environment_needs_the_running_embedded_server(tmp_path):
    from painting_ml.core.settings import Settings

    with pytest.raises(PaintingMLError, match="embedded PostgreSQL under .* is not running, .*`make airflow` first"):
        cli_environment(settings=Settings(home=tmp_path, db_url=None))


def test_children_run_in_their_own_process_group_with_their_own_log(tmp_path):
    children = Children(tmp_path / "logs")
    children.start("talker", [sys.executable, "-c", "import os, time; print('pgid', os.getpgid(0), flush=True); "
                              "time.sleep(60)"], dict(os.environ))
    try:
        pid = children.procs["talker"].pid
        line = children.wait_for(lambda: "pgid" in children.logs() and children.logs(), 30, "the child's log",
                                 every=0.05)
        assert f"pgid {pid}" in line and os.getpgid(pid) != os.getpgid(0)  # its own group, not ours
    finally:
        children.stop(grace=5)
    assert children.procs == {} and "--- talker.log" in children.logs()


def test_stop_terms_then_kills_what_ignores_sigterm(tmp_path):
    children = Children(tmp_path)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); " \
               "time.sleep(60)"
    children.start("stubborn", [sys.executable, "-c", stubborn], dict(os.environ))
    children.start("polite", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
    procs = dict(children.procs)
    children.wait_for(lambda: "ready" in (tmp_path / "stubborn.log").read_text(), 30, "the handler", every=0.05)
    t0 = time.monotonic()
    children.stop(grace=1)
    assert time.monotonic() - t0 < 10
    assert procs["polite"].returncode == -15 and procs["stubborn"].returncode == -9  # SIGTERM; SIGKILL after grace


def test_waiting_fails_early_with_the_logs_when_a_child_exits(tmp_path):
    children = Children(tmp_path)
    children.start("crash", [sys.executable, "-c", "raise SystemExit('no config here')"], dict(os.environ))
    with pytest.raises(PaintingMLError, match=r"crash exited while waiting for nothing(.|\n)*no config here"):
        children.wait_for(lambda: None, 30, "nothing", every=0.05)
    children.stop(grace=1)


def test_ports_and_a_failing_airflow_command(tmp_path):
    port = free_port()
    assert not reachable("127.0.0.1", port)
    with pytest.raises(PaintingMLError, match="airflow no-such-command failed with exit code 2"):
        run_airflow(["no-such-command"], dict(os.environ, AIRFLOW_HOME=str(tmp_path)), timeout=120, capture=True)
