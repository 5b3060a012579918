"""Connections to the painting database, the embedded server, and SQL loaded from ``sql/``.

``PAINTING_DB_URL`` set: that server is used. Unset: a real PostgreSQL 16 from the ``pgserver``
package is started under ``PAINTING_HOME/pgdata`` (shared by every process that asks for it and
stopped when the last one exits). All SQL text lives in ``sql/*.sql``; parameters are always bound.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeAlias, overload

import psycopg
import psycopg.sql
from psycopg.rows import DictRow, dict_row

from painting_ml.core.errors import DatabaseError
from painting_ml.core.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: A connection of :func:`connect`: its rows are dicts, read by name.
Connection: TypeAlias = psycopg.Connection[DictRow]

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

            # Its INFO lines (every pg_ctl command line) are chatter, and the ones its atexit stop
            # writes land after the interpreter closed stdout: "--- Logging error ---" tracebacks.
            logging.getLogger("pgserver").setLevel(logging.WARNING)
            _embedded_servers[pgdata] = pgserver.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:  # pgserver raises assorted errors (initdb, permissions)
            raise DatabaseError(
                f"could not start the embedded PostgreSQL under {pgdata}: {exc}; "
                "set PAINTING_DB_URL to use an existing server instead"
            ) from exc
    uri: str = _embedded_servers[pgdata].get_uri()
    return uri


def normalize_url(url: str) -> str:
    """Turn a SQLAlchemy-style URL into a libpq one psycopg accepts."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url).replace("postgres://", "postgresql://", 1)


_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>\S*)")
_PASSWORD_KV = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|sslpassword|sslkey_password)\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&;]*)",
    re.IGNORECASE)


def _redact_userinfo(m: re.Match[str]) -> str:
    rest = m.group("rest")
    # The userinfo ends at the *last* "@": an unencoded "@" in the password is part of it. When
    # a query holds the last "@" this hides more than needed, never less.
    at = rest.rfind("@")
    if at < 0 or ":" not in rest[:at]:
        return m.group(0)
    user = rest[:at].split(":", 1)[0]
    return f"{m.group('scheme')}{user}:***@{rest[at + 1:]}"


def _secrets(dsn: str) -> list[str]:
    """The password of ``dsn`` and, for an unencoded ``@`` in it, each of its ``@``-separated
    pieces (libpq then reads the tail as part of the host name and quotes it in its errors)."""
    found = []
    for m in _URL.finditer(dsn):
        rest = m.group("rest")
        at = rest.rfind("@")
        if at >= 0 and ":" in rest[:at]:
            secret = rest[:at].split(":", 1)[1]
            found += [secret, *secret.split("@")]
    for m in _PASSWORD_KV.finditer(dsn):
        value = m.group("value").strip("'\"")
        found += [value, *value.split("@")]
    return sorted({f for f in found if len(f) >= 2}, key=len, reverse=True)


def redact_url(text: str, dsn: str | None = None) -> str:
    """Hide every password in ``text``: a connection URL, a libpq key/value string, an error
    message that quotes either, or a malformed one.

    Handles ``scheme://user:secret@host`` (also with an unencoded ``@`` in the secret),
    ``?password=secret`` / ``&password=secret`` in a URL's query, and ``password=secret`` /
    ``password='sec ret'`` in key/value form (also ``passwd``, ``pwd``, ``sslpassword``). The one
    function every message that may hold a DSN goes through. ``dsn``: the connection string the
    message is about; its password (and the pieces of one with an unencoded ``@``, which libpq
    quotes as part of a host name) is hidden wherever it appears in ``text``.
    """
    text = _URL.sub(_redact_userinfo, str(text))
    text = _PASSWORD_KV.sub(lambda m: m.group("key") + "***", text)
    for secret in _secrets(dsn) if dsn else ():
        text = text.replace(secret, "***")
    return text


def resolve_url(settings: Settings | None = None) -> str:
    """Return the libpq URL of the painting database, starting the embedded one if needed."""
    settings = settings or get_settings()
    if settings.db_url:
        return normalize_url(settings.db_url)
    return start_embedded_server(settings.pgdata_dir)


@contextlib.contextmanager
def connect(url: str | None = None, *, autocommit: bool = False) -> Iterator[Connection]:
    """Open a connection; commit on success, roll back on any exception, always close."""
    url = url or resolve_url()
    try:
        # Rows are read by name everywhere (dict_row), never by position.
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10, row_factory=dict_row)
    except psycopg.Error as exc:
        # ``from None``: psycopg's own message may quote the DSN, so only the redacted text is
        # kept (a chained traceback would print the original).
        raise DatabaseError(
            f"cannot connect to the painting database {redact_url(url)}: {redact_url(str(exc).strip(), url)}; "
            "check PAINTING_DB_URL or unset it to use the embedded server"
        ) from None
    try:
        with conn:  # psycopg: commit on normal exit, rollback on exception
            yield conn
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"lost the connection to the painting database {redact_url(url)} mid-transaction "
            f"({redact_url(str(exc).strip(), url)[:200]}); the transaction was rolled back, nothing was half-written — "
            "rerun the step (Airflow retries it)"
        ) from exc
    finally:
        conn.close()


@functools.cache
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


@functools.cache
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
    return psycopg.conninfo.make_conninfo("", **info)


def drop_database(server_url: str, url: str) -> None:
    """Drop the database ``url`` names (made by :func:`create_database`), closing its sessions."""
    name = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))


def migrate(url: str | None = None, sql_dir: Path | None = None) -> list[str]:
    """Apply the pending versioned migrations, then refresh the views; return what was applied.

    Migrations are ``sql/migrations/NNNN_name.sql``, applied once each, in order, and recorded in
    ``schema_migrations`` (version, name, sha256). ``sql/views.sql`` is re-applied only when its
    sha256 changed. Everything runs in one transaction under the migration lock, so concurrent
    callers wait and then find nothing to do; a failing migration leaves the database as it was.
    Called by ``painting-ml migrate``, the DAGs' first task, compose's init and the demo — not by
    each ingest.
    """
    from painting_ml.core import locks

    sql_dir = sql_dir or get_settings().sql_dir
    files = sorted((sql_dir / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))
    applied: list[str] = []
    with connect(url) as conn:
        conn.execute(sql("migrations", "lock"), {"lock": locks.MIGRATE})
        conn.execute(sql("migrations", "create_table"))
        done = {r["version"]: r for r in fetch_dicts(conn, sql("migrations", "applied"))}
        for path in files:
            version = int(path.name[:4])
            text = path.read_text(encoding="utf-8")
            digest = hashlib.sha256(text.encode()).hexdigest()
            if version in done:
                if done[version]["sha256"] != digest and version > 0:
                    log.warning("migration %s changed after it was applied; applied migrations are "
                                "never re-run — add a new one instead", path.name)
                continue
            conn.execute(text)
            conn.execute(sql("migrations", "record"), {"version": version, "name": path.stem, "sha": digest})
            applied.append(path.stem)
        views = (sql_dir / "views.sql").read_text(encoding="utf-8")
        digest = hashlib.sha256(views.encode()).hexdigest()
        if done.get(0, {}).get("sha256") != digest:
            conn.execute(views)
            conn.execute(sql("migrations", "record_views"), {"sha": digest})
            applied.append("views")
    if applied:
        log.info("painting database migrated: %s", ", ".join(applied))
    return applied


def schema_version(url: str | None = None) -> int:
    """The highest applied migration (0 for a database never migrated)."""
    try:
        with connect(url) as conn:
            row = fetch_one(conn, sql("migrations", "version"))
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row["version"] or 0) if row else 0


def fetch_dicts(conn: psycopg.Connection[Any], query: str, params: Any = None) -> list[dict[str, Any]]:
    """Run a query and return rows as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return list(cur.fetchall())


@overload
def fetch_one(conn: psycopg.Connection[Any], query: str, params: Any = None, *,
              required: Literal[False] = False) -> dict[str, Any] | None: ...


@overload
def fetch_one(conn: psycopg.Connection[Any], query: str, params: Any = None, *,
              required: Literal[True]) -> dict[str, Any]: ...


def fetch_one(conn: psycopg.Connection[Any], query: str, params: Any = None, *,
              required: bool = False) -> dict[str, Any] | None:
    """Run a query and return its first row as a dict, or None.

    ``required``: the query always yields a row (an aggregate, ``INSERT ... RETURNING``, a lookup
    of a row a foreign key guarantees), so no row is a bug: raise :class:`LookupError` instead.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        row = cur.fetchone()
    if row is None and required:
        lines = (line.strip() for line in query.splitlines())
        first = next((line for line in lines if line and not line.startswith("--")), "")
        raise LookupError(f"expected a row, got none, from the query {first[:80]!r}")
    return row
