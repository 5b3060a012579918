"""Connections to the painting database, the embedded server, and SQL loaded from ``sql/``.

``PAINTING_DB_URL`` set: that server is used. Unset: a real PostgreSQL 16 from the ``pgserver``
package is started under ``PAINTING_HOME/pgdata`` (shared by every process that asks for it and
stopped when the last one exits). All SQL text lives in ``sql/*.sql``; parameters are always bound.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql
from psycopg.rows import dict_row

from painting_ml.exceptions import DatabaseError
from painting_ml.settings import Settings, get_settings

log = logging.getLogger(__name__)

_embedded_servers: dict[Path, Any] = {}


def start_embedded_server(pgdata: Path) -> str:
    """Start (or join) the pgserver PostgreSQL under ``pgdata`` and return its URI.

    The server is shared between processes through pgserver's handle list and stopped cleanly
    when the last process holding it exits.
    """
    pgdata = pgdata.resolve()
    if pgdata not in _embedded_servers:
        os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent / ".runtime"))
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
        pgdata.mkdir(parents=True, exist_ok=True)
        try:
            import pgserver

            _embedded_servers[pgdata] = pgserver.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:  # pgserver raises assorted errors (initdb, permissions)
            raise DatabaseError(
                f"could not start the embedded PostgreSQL under {pgdata}: {exc}; "
                "set PAINTING_DB_URL to use an existing server instead"
            ) from exc
    return _embedded_servers[pgdata].get_uri()


def normalize_url(url: str) -> str:
    """Turn a SQLAlchemy-style URL into a libpq one psycopg accepts."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url).replace("postgres://", "postgresql://", 1)


def redact_url(url: str) -> str:
    """Hide the password of a URL before it is logged or shown."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def resolve_url(settings: Settings | None = None) -> str:
    """Return the libpq URL of the painting database, starting the embedded one if needed."""
    settings = settings or get_settings()
    if settings.db_url:
        return normalize_url(settings.db_url)
    return start_embedded_server(settings.pgdata_dir)


@contextlib.contextmanager
def connect(url: str | None = None, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    """Open a connection; commit on success, roll back on any exception, always close."""
    url = url or resolve_url()
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"cannot connect to the painting database {redact_url(url)}: {str(exc).strip()}; "
            "check PAINTING_DB_URL or unset it to use the embedded server"
        ) from exc
    try:
        with conn:  # psycopg: commit on normal exit, rollback on exception
            yield conn
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"lost the connection to the painting database {redact_url(url)} mid-transaction "
            f"({str(exc).strip()[:200]}); the transaction was rolled back, nothing was half-written — "
            "rerun the step (Airflow retries it)"
        ) from exc
    finally:
        conn.close()


@functools.lru_cache(maxsize=None)
def _read_sql(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def load_sql(name: str, settings: Settings | None = None) -> str:
    """Return the text of ``sql/<name>.sql`` (``name`` may contain ``queries/``)."""
    settings = settings or get_settings()
    path = settings.sql_dir / f"{name}.sql"
    if not path.is_file():
        raise DatabaseError(f"SQL file {path} not found; is the sql/ folder beside the package?")
    return _read_sql(str(path))


def load_statements(name: str) -> dict[str, str]:
    """Split a ``.sql`` file into named statements marked by ``-- name: <key>`` lines."""
    statements: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in load_sql(name).splitlines():
        m = re.match(r"^--\s*name:\s*(\w+)", line)
        if m:
            if current:
                statements[current] = "\n".join(lines).strip()
            current, lines = m.group(1), []
        elif current:
            lines.append(line)
    if current:
        statements[current] = "\n".join(lines).strip()
    return statements


@functools.lru_cache(maxsize=None)
def statements(name: str) -> dict[str, str]:
    return load_statements(name)


def sql(file: str, key: str) -> str:
    """One named statement of ``sql/<file>.sql``."""
    try:
        return statements(file)[key]
    except KeyError:
        raise DatabaseError(f"no statement named {key!r} in sql/{file}.sql") from None


def create_database(server_url: str, prefix: str) -> str:
    """Create a uniquely named, empty database on ``server_url``'s server; return its URL
    (tests and benchmarks use one each, so they never touch user data)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


def drop_database(server_url: str, url: str) -> None:
    """Drop the database ``url`` names (made by :func:`create_database`), closing its sessions."""
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))


def migrate(url: str | None = None) -> None:
    """Create or update the schema (idempotent: every statement is IF NOT EXISTS / OR REPLACE)."""
    with connect(url) as conn:
        # A transaction-scoped advisory lock keeps concurrent migrations from racing.
        conn.execute("SELECT pg_advisory_xact_lock(7061)")
        conn.execute(load_sql("schema"))
        conn.execute(load_sql("views"))


def fetch_dicts(conn: psycopg.Connection, query: str, params: Any = None) -> list[dict[str, Any]]:
    """Run a query and return rows as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return list(cur.fetchall())
