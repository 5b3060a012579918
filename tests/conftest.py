"""Shared fixtures (a throw-away painting database on the real server, a temp PAINTING_HOME,
generated datasets) and the test tiers.

Every test is in exactly one tier, set by a ``pytestmark = pytest.mark.<tier>`` line in its module
or a mark on the test (the closest mark wins):

- ``unit``: pure code on tiny inputs. No database, no model training, no subprocess.
- ``db``: the real PostgreSQL. No model training, no subprocess.
- ``train``: trains or loads a real (tiny) Keras model.
- ``e2e``: the real Airflow DAG, the Celery cluster, the browser, CLI subprocesses.

A test with no tier fails collection; a ``unit`` or ``db`` test that starts a subprocess, trains a
model, or (``unit``) connects to the database fails with the line saying which tier it belongs in.
Under ``CI=true`` a skipped test is a failure: CI must run every test (a missing service is a
broken CI machine, not a reason to pass).

The server is the one named by ``PAINTING_DB_URL`` (CI sets it to the machine's PostgreSQL) or,
when that is unset, the embedded pgserver one. Each test session creates its own database and
drops it at the end, so tests never touch user data.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# The tests' trainings are a few steps on a few dozen 32 px images, where tracing a step (TensorFlow)
# costs more than running it op by op: the suite trains and predicts eagerly (Keras' run_eagerly),
# which takes 16 % off six training modules' time (docs/benchmarks.md). The modules about the traced
# step itself train as production does (traced_steps): test_training, test_data_parallel's children,
# test_e2e's DAG.
os.environ.setdefault("PAINTING_RUN_EAGERLY", "1")


def _retrain_cron_far_from_now() -> str:
    """A weekly PAINTING_RETRAIN_CRON whose last point is 3.5-4 days ago and next 2.5-3 days ahead.

    On unpause, Airflow schedules a DAG's most recent past cron point when it fired within a tenth
    of the cron's interval (16.8 h for the weekly default, Monday 03:00 UTC): tests that unpause
    painting_retrain on a Monday morning would get a scheduled run with the production recipe
    beside their own manual ones."""
    from datetime import datetime

    cron_weekday = (datetime.now(UTC).weekday() + 1 + 3) % 7  # cron: 0 = Sunday
    return f"0 12 * * {cron_weekday}"


os.environ.setdefault("PAINTING_RETRAIN_CRON", _retrain_cron_far_from_now())

#: Airflow settings of the Airflows the tests start (tests/test_browser.py, tests/cluster.py): the DAG
#: files never change during a test, so the dag-processor parses them once at start and not again.
#: Re-parsing all five every few seconds keeps it busy (about 0.6 of a core on this machine, against
#: 0.06 for the whole idle Airflow when they are parsed once), CPU the trainings under test are short of.
PARSE_ONCE = {"AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "3600",
              "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600"}

TIERS = ("unit", "db", "train", "e2e")
#: pytest-timeout per tier (seconds), unless a test sets its own.
TIER_TIMEOUTS = {"unit": 60, "db": 180, "train": 900, "e2e": 1800}
DB_FIXTURES = {"server_url", "db_url", "clean_db"}
IN_CI = os.environ.get("CI", "").lower() == "true"
# platform.processor() runs `uname -p` once and caches it; TensorFlow asks on import, so ask here,
# before the tier guard, or the first TensorFlow import inside a db test would count as a subprocess.
platform.processor()


_MODULE_TIER = re.compile(r"^pytestmark = pytest\.mark\.(\w+)", re.M)
_TEST_TIER = re.compile(r"^\s*@pytest\.mark\.(unit|db|train|e2e)\b", re.M)


def pytest_ignore_collect(collection_path, config):
    """With ``-m`` naming tiers (``make test-fast``), skip importing modules none of whose tests can
    match: importing TensorFlow and Airflow for deselected tests would cost most of the tier's time."""
    expr = config.getoption("markexpr")
    if not expr or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    from _pytest.mark.expression import Expression

    matcher = Expression.compile(expr)
    source = collection_path.read_text()
    module = _MODULE_TIER.search(source)
    tiers = {module.group(1)} if module else set()
    tiers |= set(_TEST_TIER.findall(source))
    if tiers and not any(matcher.evaluate(lambda name, t=t, **kw: name == t) for t in tiers):
        return True
    return None


def tier_of(item: pytest.Item) -> str | None:
    """The test's tier: its closest tier mark (a mark on the test beats its module's pytestmark)."""
    return next((m.name for m in item.iter_markers() if m.name in TIERS), None)


def _only_tier(item: pytest.Item, tier: str):
    """``item.iter_markers`` without the tier marks its closest one overrides, so ``-m`` sees one tier."""
    iter_markers = item.iter_markers

    def markers(name: str | None = None):
        return (m for m in iter_markers(name) if m.name not in TIERS or m.name == tier)

    return markers


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    problems = []
    for item in items:
        tier = tier_of(item)
        if tier is not None and len({m.name for m in item.iter_markers() if m.name in TIERS}) > 1:
            item.iter_markers = _only_tier(item, tier)  # a test's own tier beats its module's for -m
        if tier is None:
            problems.append(f"{item.nodeid}: no tier; add `pytestmark = pytest.mark.<{'|'.join(TIERS)}>` to its module")
        elif tier == "unit" and DB_FIXTURES & set(item.fixturenames):
            used = ", ".join(sorted(DB_FIXTURES & set(item.fixturenames)))
            problems.append(f"{item.nodeid}: a unit test uses the database ({used}); mark it db")
        elif item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIER_TIMEOUTS[tier]))
    if problems:
        raise pytest.UsageError("tests outside the tiers:\n  " + "\n  ".join(problems))


@pytest.fixture(autouse=True)
def _tier_guard(request, monkeypatch):
    """Hold ``unit`` and ``db`` tests to their tier: what they may not do fails at once, naming the tier."""
    tier = tier_of(request.node)
    if tier not in ("unit", "db"):
        return

    def refuse(what: str, belongs: str):
        def guard(*args, **kwargs):
            raise RuntimeError(f"a {tier} test may not {what}: mark {request.node.nodeid} {belongs}")
        return guard

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("start a subprocess", "e2e"))
    if tier == "unit":
        monkeypatch.setattr(psycopg, "connect", refuse("connect to the database", "db"))
    keras = sys.modules.get("keras")
    if keras is not None:
        for name in ("fit", "train_on_batch"):
            monkeypatch.setattr(keras.Model, name, refuse("train a model", "train"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skip is a failure: the reason names what CI failed to provide."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (CI must run every test): {reason}"


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
    from painting_ml.core import db, settings

    url = db.create_database(server_url, "pm_test")
    os.environ["PAINTING_DB_URL"] = url
    settings.reload_settings()
    db.migrate(url)
    yield url
    db.drop_database(server_url, url)


TABLES = ["champion", "promotions", "artifacts", "predictions", "class_metrics", "confusion", "verification",
          "epochs", "runs", "augmented_images",
          "dataset_items", "dataset_versions", "rejects", "paintings", "ingest_state", "ingest_files", "image_cache",
          "name_spellings", "duplicate_pairs", "painting_groups", "audits", "audit_folds", "audit_predictions",
          "label_issues", "label_reviews"]


def emptying_sql(url: str, tables: list[str]) -> str:
    """What ``TRUNCATE <tables> RESTART IDENTITY CASCADE`` does, as DELETEs: ``tables`` and every table
    that references them, children first, then their sequences restarted. On a test's few rows this
    takes ~7 ms where TRUNCATE (new files for every table and index) takes ~100 ms, and clean_db runs
    before some 400 tests."""
    from graphlib import TopologicalSorter

    with psycopg.connect(url) as conn:
        edges = conn.execute("SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
                             "WHERE contype = 'f' AND connamespace = 'public'::regnamespace").fetchall()
        wanted = set(tables)
        while grown := {child for child, parent in edges if parent in wanted} - wanted:
            wanted |= grown
        referenced_by = {t: {c for c, p in edges if p == t and c != t} for t in wanted}
        order = list(TopologicalSorter(referenced_by).static_order())  # a table after those referencing it
        sequences = [r[0] for r in conn.execute(
            "SELECT s.oid::regclass::text FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
            "AND d.deptype IN ('a', 'i') WHERE s.relkind = 'S' AND d.refobjid::regclass::text = ANY(%s)",
            (sorted(wanted),))]
    return "; ".join([f"DELETE FROM {t}" for t in order] + [f"ALTER SEQUENCE {q} RESTART" for q in sequences])


@pytest.fixture(scope="session")
def _emptying(db_url) -> str:
    return emptying_sql(db_url, TABLES)


@pytest.fixture
def clean_db(db_url, _emptying) -> str:
    """The test database, emptied before the test."""
    with psycopg.connect(db_url) as conn:
        conn.execute(_emptying)
    return db_url


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """3 artists (+1 test-only) × 12 paintings at 48 px, with 3 broken files and 1 missing."""
    from painting_ml.data.synth import generate

    out = tmp_path_factory.mktemp("tiny") / "data"
    generate(out, artists=3, per_artist=12, size=48, seed=7, test_only_artists=1, broken=3)
    return out


@contextmanager
def using_setting(name: str, value: str):
    """Set the environment variable ``name`` (and the cached settings) to ``value`` for a while."""
    from painting_ml.core.settings import reload_settings

    before = os.environ.get(name)
    os.environ[name] = value
    reload_settings()
    try:
        yield value
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
        reload_settings()


def using_database(url: str):
    """Point the library (PAINTING_DB_URL and the cached settings) at ``url`` for a while."""
    return using_setting("PAINTING_DB_URL", url)


def traced_steps():
    """Train and predict with traced steps, as production does, for a while (the suite's default is
    op by op: ``PAINTING_RUN_EAGERLY`` above)."""
    return using_setting("PAINTING_RUN_EAGERLY", "0")


@pytest.fixture(scope="session")
def evaluated_run(server_url, db_url, tiny_data):
    """One trained, evaluated and reported tiny run (artist + style heads, two epochs, mosaics, report)
    shared by every module that needs *a* model. It lives in a database of its own, so the ``clean_db``
    truncations of other modules never reach it; a module uses it through :func:`model_db`."""
    from painting_ml import pipeline
    from painting_ml.core import db

    url = db.create_database(server_url, "pm_model")
    db.migrate(url)
    with using_database(url):
        cfg = tiny_run_config(tiny_data, epochs=2, targets=("artist", "style"), mosaic_thumb=48, mosaic_columns=4,
                              early_stopping_patience=5)
        summary = pipeline.run_all(cfg, run_key="test:shared")
    yield {**summary, "url": url}
    db.drop_database(server_url, url)


@pytest.fixture(scope="module")
def model_db(evaluated_run):
    """The shared run's database, which the library uses for the rest of this module's tests."""
    with using_database(evaluated_run["url"]) as url:
        yield url


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
