"""Secrets stay out of what is shown, and SQL is never built from strings."""

import ast
import textwrap
from pathlib import Path

import pytest

from painting_ml.core.db import redact_url

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent


def test_database_passwords_are_redacted():
    assert redact_url("postgresql://app:s3cret@db.example:5432/painting") == "postgresql://app:***@db.example:5432/painting"
    assert redact_url("postgresql://app@db/painting") == "postgresql://app@db/painting"


@pytest.mark.parametrize("dsn,shown", [
    ("postgresql://app:s3cret@db:5432/painting", "postgresql://app:***@db:5432/painting"),
    ("postgresql+psycopg://app:s3cret@/airflow?host=/run/pg", "postgresql+psycopg://app:***@/airflow?host=/run/pg"),
    ("postgresql://app:s3@cr@et@db/painting", "postgresql://app:***@db/painting"),              # unencoded @
    ("postgresql://db/painting?user=app&password=s3cret&sslmode=require",
     "postgresql://db/painting?user=app&password=***&sslmode=require"),                        # query
    ("postgresql://db/painting?password=s3cret", "postgresql://db/painting?password=***"),
    ("host=db user=app password=s3cret dbname=painting", "host=db user=app password=*** dbname=painting"),
    ("host=db password = 's3 cr\\'et' dbname=painting", "host=db password = *** dbname=painting"),  # quoted
    ("host=db PASSWORD=s3cret", "host=db PASSWORD=***"),
    ("postgresql://app:s3cret@db:notaport/painting", "postgresql://app:***@db:notaport/painting"),  # malformed
    ("postgresql://app:s3cret@", "postgresql://app:***@"),
    ('invalid dsn: missing "=" after "postgresql://app:s3cret@db:x/y" in connection info string',
     'invalid dsn: missing "=" after "postgresql://app:***@db:x/y" in connection info string'),
])
def test_every_way_of_writing_a_dsn_is_redacted(dsn, shown):
    assert redact_url(dsn) == shown
    assert "s3" not in redact_url(dsn)


@pytest.mark.parametrize("dsn", [
    "postgresql://app:s3cret@127.0.0.1:1/painting",                    # refused
    "postgresql://app:s3cret@127.0.0.1:notaport/painting",             # malformed
    "host=127.0.0.1 port=1 user=app password=s3cret dbname=painting",  # key/value
    "postgresql://127.0.0.1:1/painting?password=s3cret",               # query
    "postgresql://app:s3@cret@127.0.0.1:1/painting",                   # unencoded @
])
@pytest.mark.db
def test_connection_errors_never_show_the_password(dsn):
    import traceback

    from painting_ml.core import db
    from painting_ml.core.errors import DatabaseError

    with pytest.raises(DatabaseError) as err, db.connect(dsn):
        pass
    shown = "".join(traceback.format_exception(err.value))  # what a log or Airflow would print
    assert "s3cret" not in shown and "cret" not in shown and "***" in shown


# Where SQL text may come from: a literal, a named statement loaded from sql/*.sql (db.sql,
# load_sql, a NamedQuery's .sql, a migration file's read_text()), or psycopg.sql composition
# (SQL(...).format(Identifier(...))). Anything else — f-strings, %, +, str.format, join, or a
# variable built from those — is an offender.
_LOADERS = {"sql", "load_sql", "read_text"}
_HELPERS = {"fetch_dicts", "fetch_one"}


def _is_safe(node, assignments, seen=frozenset()) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Attribute):
        return node.attr == "sql"
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in _LOADERS or name == "SQL":
            return True
        if name == "format" and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call):
            inner = func.value.func
            return (inner.attr if isinstance(inner, ast.Attribute) else getattr(inner, "id", "")) == "SQL"
        return False
    if isinstance(node, ast.Name):
        if node.id in seen:
            return True
        values = assignments.get(node.id)
        return bool(values) and all(_is_safe(v, assignments, seen | {node.id}) for v in values)
    return False


def _walk_scope(scope):
    """The nodes of one scope: a function's body, or module level without the functions."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def sql_offenders(source: str, label: str) -> list[str]:
    tree = ast.parse(source)
    offenders = []
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef))]
    for scope in scopes:
        assignments: dict[str, list] = {}
        if getattr(scope, "name", None) in _HELPERS:
            # db.fetch_dicts(conn, query) / fetch_one: the query parameter is checked at each call site.
            assignments["query"] = [ast.Constant("checked at the call site")]
        for node in _walk_scope(scope):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assignments.setdefault(target.id, []).append(node.value)
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                assignments.setdefault(node.target.id, []).append(node)  # x += ... is never safe
        for node in _walk_scope(scope):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            position = 0 if name in ("execute", "executemany", "copy") else 1 if name in _HELPERS else None
            if position is not None and len(node.args) > position and not _is_safe(node.args[position], assignments):
                offenders.append(f"{label}:{node.lineno}")
    return sorted(set(offenders))


def test_the_sql_checker_catches_every_way_of_building_a_query():
    bad = textwrap.dedent('''
        def f(conn, table, x):
            conn.execute(f"SELECT * FROM {table}")
            conn.execute("SELECT * FROM %s" % table)
            conn.execute("SELECT * FROM " + table)
            conn.execute("SELECT * FROM {}".format(table))
            q = "SELECT * FROM " + table
            conn.execute(q)
            q2 = "DELETE FROM t"
            q2 += " WHERE a = " + x
            cur.executemany(q2, [])
            conn.execute(" ".join(["SELECT", x]))
            db.fetch_one(conn, "SELECT " + x)
    ''')
    assert sql_offenders(bad, "bad") == sorted(f"bad:{n}" for n in (3, 4, 5, 6, 8, 11, 12, 13))
    good = textwrap.dedent('''
        def f(conn, q, path):
            conn.execute("SELECT 1")
            conn.execute(db.sql("runs", "get_run"), {"id": 1})
            text = path.read_text()
            conn.execute(text)
            stmt = db.sql("a", "b")
            conn.execute(stmt, {})
            conn.execute(q.sql, {})
            conn.execute(psycopg.sql.SQL("DROP DATABASE {}").format(psycopg.sql.Identifier("x")))
    ''')
    assert sql_offenders(good, "good") == []


def test_all_sql_in_the_library_and_dags_is_static_text_with_bound_parameters():
    files = sorted((REPO / "painting_ml").rglob("*.py")) + sorted((REPO / "dags").glob("*.py"))
    assert len(files) > 30  # the walk really reaches the sub-packages
    offenders = []
    for path in files:
        offenders += sql_offenders(path.read_text(), str(path.relative_to(REPO)))
    assert offenders == []
