"""Named SQL queries over results (``sql/queries/*.sql``), run by ``painting-ml sql NAME``.

Each file starts with comment lines that describe it::

    -- description: what the query answers
    -- param: run_id int = latest      (a default of ``latest`` binds NULL: the query picks the latest)
    -- param: artist text               (no default: required)

Values are always bound as parameters, never pasted into the SQL.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from psycopg.rows import tuple_row

from painting_ml.core import db
from painting_ml.core.errors import ConfigError
from painting_ml.core.settings import get_settings

_TYPES = {"int": int, "float": float, "text": str}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None  # None: required; "latest": NULL

    def parse(self, raw: str | None) -> Any:
        value = self.default if raw is None else raw
        if value is None:
            raise ConfigError(f"parameter {self.name!r} is required: add --param {self.name}=VALUE")
        if raw is None and value == "latest":
            return None
        try:
            parsed = _TYPES[self.type](value)
        except ValueError:
            raise ConfigError(f"parameter {self.name}={value!r} must be {self.type}") from None
        # Numbers reach the database as bound values: keep them to what a query can mean (a count,
        # an id, a probability) so a huge or negative value is one clear line, not a SQL error.
        if self.type == "int" and not 1 <= parsed <= 2**31 - 1:
            raise ConfigError(f"parameter {self.name}={value!r} must be an integer in [1, {2**31 - 1}]")
        if self.type == "float" and not math.isfinite(parsed):
            raise ConfigError(f"parameter {self.name}={value!r} must be a finite number")
        return parsed


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: tuple[Param, ...] = field(default=())
    sql: str = ""


def parse_query(name: str, text: str) -> NamedQuery:
    description, params = "", []
    for line in text.splitlines():
        if m := re.match(r"^--\s*description:\s*(.+)$", line):
            description = m.group(1).strip()
        elif m := re.match(r"^--\s*param:\s*(\w+)\s+(int|float|text)(?:\s*=\s*(\S+))?\s*$", line):
            params.append(Param(m.group(1), m.group(2), m.group(3)))
    return NamedQuery(name, description, tuple(params), text)


def list_queries() -> list[NamedQuery]:
    folder = get_settings().sql_dir / "queries"
    return [parse_query(p.stem, p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.sql"))]


def get_query(name: str) -> NamedQuery:
    found = {q.name: q for q in list_queries()}
    if name not in found:
        raise ConfigError(f"no query named {name!r}; known queries: {', '.join(sorted(found))}")
    return found[name]


def run_query(name: str, params: dict[str, str] | None = None,
              url: str | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run a named query with ``params`` (text values, converted by the declared types)."""
    q = get_query(name)
    params = dict(params or {})
    unknown = sorted(set(params) - {p.name for p in q.params})
    if unknown:
        known = ", ".join(p.name for p in q.params) or "none"
        raise ConfigError(f"query {name!r} has no parameter(s) {', '.join(unknown)}; its parameters: {known}")
    values = {p.name: p.parse(params.get(p.name)) for p in q.params}
    # Any query's rows, printed column by column: tuples beside the cursor's column names.
    with db.connect(url) as conn, conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(q.sql, values)
        columns = [c.name for c in cur.description] if cur.description else []
        return columns, cur.fetchall()
