"""Versioned schema migrations: applied once, in order, under a lock; a database made before
migrations existed upgrades in place; views are refreshed only when views.sql changes."""

import shutil

import psycopg
import pytest

from painting_ml.core import db
from painting_ml.core.settings import get_settings

pytestmark = pytest.mark.db


@pytest.fixture
def empty_db(server_url):
    url = db.create_database(server_url, "pm_migrate")
    yield url
    db.drop_database(server_url, url)


def _latest() -> int:
    return max(int(p.name[:4]) for p in (get_settings().sql_dir / "migrations").glob("[0-9]*.sql"))


def test_fresh_database_gets_every_migration_once(empty_db):
    applied = db.migrate(empty_db)
    assert applied[0] == "0001_baseline" and applied[-1] == "views"
    assert db.schema_version(empty_db) == _latest()
    assert db.migrate(empty_db) == []  # nothing pending: nothing re-run


def test_database_from_before_migrations_upgrades_in_place(empty_db):
    sql_dir = get_settings().sql_dir
    # What the old `schema.sql` left behind: the tables, no schema_migrations. (Its views were
    # dropped and recreated by every start; views.sql now matches the newest schema only.)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute((sql_dir / "migrations" / "0001_baseline.sql").read_text())
        conn.execute("INSERT INTO paintings (filename, artist, data_root, rel_path, width, height, mode, source_csv) "
                     "VALUES ('1.jpg', 'Ann', '/d', 'train/1.jpg', 10, 10, 'RGB', 'all_data_info.csv')")
    assert db.schema_version(empty_db) == 0
    db.migrate(empty_db)
    assert db.schema_version(empty_db) == _latest()
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT artist FROM paintings").fetchall() == [("Ann",)]


def test_a_new_migration_is_applied_once_and_a_failing_one_rolls_back(empty_db, tmp_path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(get_settings().sql_dir, sql_dir)
    db.migrate(empty_db, sql_dir=sql_dir)
    (sql_dir / "migrations" / "0900_add_note.sql").write_text("ALTER TABLE paintings ADD COLUMN note text;")
    assert db.migrate(empty_db, sql_dir=sql_dir) == ["0900_add_note"]
    assert db.migrate(empty_db, sql_dir=sql_dir) == []
    (sql_dir / "migrations" / "0901_broken.sql").write_text("ALTER TABLE paintings ADD COLUMN x text;\nSELECT nope;")
    with pytest.raises(psycopg.errors.UndefinedColumn):
        db.migrate(empty_db, sql_dir=sql_dir)
    with psycopg.connect(empty_db) as conn:
        cols = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                           "WHERE table_name = 'paintings'")}
        assert "note" in cols and "x" not in cols
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == 900


def test_every_named_statement_is_used_by_the_library():
    """Dead SQL rots: each ``-- name:`` statement of sql/*.sql is referenced from painting_ml."""
    import re
    from pathlib import Path

    sql_dir = get_settings().sql_dir
    source = "\n".join(p.read_text() for p in (Path(db.__file__).parents[1]).rglob("*.py"))
    unused = [f"{f.stem}.{name}" for f in sorted(sql_dir.glob("*.sql")) if f.stem != "views"
              for name in re.findall(r"^--\s*name:\s*(\w+)", f.read_text(), flags=re.M)
              if f'"{name}"' not in source]
    assert unused == []
