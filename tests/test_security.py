"""Secrets stay out of what is shown, and SQL is never built from strings."""

import ast
from pathlib import Path

from painting_ml.db import redact_url

REPO = Path(__file__).resolve().parent.parent


def test_database_passwords_are_redacted():
    assert redact_url("postgresql://app:s3cret@db.example:5432/painting") == "postgresql://app:***@db.example:5432/painting"
    assert redact_url("postgresql://app@db/painting") == "postgresql://app@db/painting"


def _sql_calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "execute", "executemany", "copy") and node.args:
            yield node, node.args[0]


def test_all_sql_in_the_library_is_static_text_with_bound_parameters():
    offenders = []
    for path in sorted((REPO / "painting_ml").glob("*.py")):
        tree = ast.parse(path.read_text())
        for call, query in _sql_calls(tree):
            # allowed: a literal, a named statement from sql/*.sql (db.sql(...) / load_sql(...)), or
            # psycopg.sql composition with Identifier; never an f-string, % or + on the query text
            if isinstance(query, ast.JoinedStr) or (isinstance(query, ast.BinOp)):
                offenders.append(f"{path.name}:{call.lineno}")
    assert offenders == []

