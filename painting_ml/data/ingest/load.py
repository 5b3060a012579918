"""Writing a plan into the database, inside the caller's transaction: the catalog rows by binary
COPY (straight into ``paintings`` on a root's first load, else through a staging table and a
set-based update + insert), the gone-marking, the rejects, the per-file manifest and the folder's
fingerprint.

The statements live in ``sql/ingest.sql``; their column lists are composed here from the record
types of :mod:`~painting_ml.data.ingest.records`, as identifiers (values are always bound).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from painting_ml.core import db, locks
from painting_ml.data.ingest.records import (
    FILE_COLUMNS,
    FILE_KEY,
    PAINTING_COLUMNS,
    PAINTING_KEY,
    REJECT_COLUMNS,
    CatalogRow,
    FileRecord,
    Reject,
)


@dataclass(frozen=True)
class _Table:
    """A table's columns as the statements of sql/ingest.sql name them: ``alias`` is the table's
    alias in its upsert (``s`` is the staging table's)."""

    columns: tuple[str, ...]
    key: tuple[str, ...]
    alias: str

    def sql(self, statement: str) -> sql.Composed:
        """The named statement with its column placeholders filled."""
        updated = [c for c in self.columns if c not in self.key]
        return sql.SQL(db.sql("ingest", statement)).format(
            columns=_identifiers(self.columns), staged=_identifiers(self.columns, "s"),
            updated=_identifiers(updated), staged_updated=_identifiers(updated, "s"),
            current=_identifiers(updated, self.alias))


_PAINTINGS = _Table(PAINTING_COLUMNS, PAINTING_KEY, "p")
_FILES = _Table(FILE_COLUMNS, FILE_KEY, "f")
_REJECTS = _Table(REJECT_COLUMNS, (), "r")


def _identifiers(columns: Iterable[str], alias: str | None = None) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(alias, c) if alias else sql.Identifier(c) for c in columns)


@dataclass(frozen=True)
class LoadTotals:
    """A data root's counts after :func:`load_rows`.

    Attributes:
        paintings_total: the root's live paintings.
        rejects_total: the root's rejects.
        gone: rows of the root marked gone or removed by this load.
    """

    paintings_total: int
    rejects_total: int
    gone: int


def lock_ingest(conn: psycopg.Connection[Any]) -> None:
    """Take the ingest lock for the rest of the transaction (re-entrant): one ingest at a time."""
    conn.execute(db.sql("ingest", "lock_ingest"), {"lock": locks.INGEST})


def load_rows(conn: psycopg.Connection[Any], good: Sequence[CatalogRow], rejects: Sequence[Reject],
              source_csv: str, root: str, gone_names: list[str] | None = None) -> LoadTotals:
    """Make the catalog of ``root`` mirror the folder, inside the caller's transaction (all or
    nothing): COPY ``good`` into a staging table, rewrite changed rows, insert new ones, mark the
    root's rows that are no longer good as gone (deleting those no dataset version references),
    and replace the root's rejects. Other roots' rows are never touched. A root's first load
    (no row of it yet) COPYs ``good`` straight into the catalog instead.

    Args:
        conn: the connection whose transaction the load joins.
        good: the rows to load.
        rejects: the root's rejects; they replace its previous ones.
        source_csv: the CSV's file name.
        root: the data root (see :func:`~painting_ml.data.ingest.scan.resolve_root`).
        gone_names: an incremental load: ``good`` holds only the new or changed rows, and the rows
            to mark gone are these file names (instead of every row of the root not in ``good``).

    Returns:
        The root's counts afterwards and how many rows this load marked gone.
    """
    lock_ingest(conn)  # callers may hold it already
    # A root with no row yet (its first ingest) has nothing to update, mark gone or count: the
    # insert is all there is, and its row count is the total. Checked under the ingest lock.
    has_rows = db.fetch_one(conn, db.sql("ingest", "root_has_rows"), {"root": root})
    first = not (has_rows and has_rows["has_rows"]) and all(row.data_root == root for row in good)
    # In primary-key order (code-point order is the key's order under a C collation), the inserts
    # take the B-tree's rightmost-page fast path instead of a descent per row (~1/4 of a 100k load).
    good = sorted(good, key=_by_filename)
    gone = 0
    with conn.cursor(row_factory=dict_row) as cur:
        if first:
            # Nothing to compare against: COPY straight into the catalog. The server inserts while
            # the client is still encoding rows (a staging table would serialise the two, and write
            # every row twice). File names are unique here: a second CSV line of a name is a reject.
            _copy(cur, "copy_paintings", "paintings", _PAINTINGS, good)
        else:
            cur.execute(db.sql("ingest", "create_staging"))
            _copy(cur, "copy_staging", "staging_paintings", _PAINTINGS, good)
            cur.execute(db.sql("ingest", "analyze_staging"))
            cur.execute(_PAINTINGS.sql("update_paintings"))
            cur.execute(_PAINTINGS.sql("insert_new_paintings"))
            if gone_names is None:
                cur.execute(db.sql("ingest", "mark_gone"), {"root": root})
            else:
                cur.execute(db.sql("ingest", "mark_gone_names"), {"root": root, "names": gone_names})
            gone = max(cur.rowcount, 0)
            cur.execute(db.sql("ingest", "delete_unreferenced_gone"), {"root": root})
        # Rejects are replaced per data root so a rerun yields the same rows, not duplicates.
        cur.execute(db.sql("ingest", "delete_rejects"), {"root": root})
        _copy(cur, "copy_rejects", "rejects", _REJECTS, rejects)
        if first:
            return LoadTotals(paintings_total=len(good), rejects_total=len(rejects), gone=0)
        cur.execute(db.sql("ingest", "counts"), {"root": root})
        totals = cur.fetchone()
    assert totals is not None, "counts returns one row"
    return LoadTotals(paintings_total=int(totals["paintings_total"]), rejects_total=int(totals["rejects_total"]),
                      gone=gone)


def _by_filename(row: CatalogRow) -> str:
    return row.filename


def read_manifest(conn: psycopg.Connection[Any], root: str) -> dict[str, FileRecord]:
    """The per-file manifest of ``root`` by relative path (empty while the root has neither
    catalog rows nor rejects, so an emptied catalog is probed afresh)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_FILES.sql("manifest"), {"root": root})
        rows = cur.fetchall()  # one call: iterating the cursor costs a Python round per row
    return {row["rel_path"]: FileRecord.from_row(row) for row in rows}


def record_manifest(conn: psycopg.Connection[Any], root: str, files: Sequence[FileRecord],
                    old_files: list[str] | None = None) -> None:
    """Make ``root``'s rows of the per-file manifest equal ``files``, inside the caller's transaction.

    Args:
        conn: the connection whose transaction the write joins.
        root: the data root.
        files: the manifest records to write.
        old_files: an incremental write: ``files`` holds only new or changed records, and these
            paths are the ones to remove (instead of every record of the root not in ``files``).
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(db.sql("ingest", "create_staging_files"))
        _copy(cur, "copy_staging_files", "staging_files", _FILES, (record.values() for record in files))
        cur.execute(_FILES.sql("update_files"))
        cur.execute(_FILES.sql("insert_new_files"))
        if old_files is None:
            cur.execute(db.sql("ingest", "delete_old_files"), {"root": root})
        else:
            cur.execute(db.sql("ingest", "delete_files"), {"root": root, "paths": old_files})


def state_stamp(conn: psycopg.Connection[Any], root: str) -> datetime | None:
    """When ``root`` was last ingested (None: never)."""
    row = db.fetch_one(conn, db.sql("ingest", "state_stamp"), {"root": root})
    return row["ingested_at"] if row else None


def stored_fingerprint(conn: psycopg.Connection[Any], root: str) -> str | None:
    """The fingerprint the last ingest of ``root`` recorded, while its paintings are still in the catalog."""
    row = db.fetch_one(conn, db.sql("ingest", "get_state"), {"root": root})
    return str(row["fingerprint"]) if row else None


def record_fingerprint(conn: psycopg.Connection[Any], root: str, fingerprint: str, files: int) -> None:
    """Store ``root``'s fingerprint and file count, in the transaction of the rows they describe."""
    conn.execute(db.sql("ingest", "set_state"), {"root": root, "fp": fingerprint, "files": files})


def _copy(cur: psycopg.Cursor[Any], statement: str, table: str, columns: _Table,
          rows: Iterable[Sequence[object]]) -> None:
    """COPY ``rows`` (values in ``columns`` order) into ``table`` with the named statement.

    Binary COPY: the client sends each value in its column's own type, so neither side formats
    or parses text (about 3x less client CPU than text COPY for the catalog's rows)."""
    oids = [r["oid"] for r in db.fetch_dicts(cur.connection, db.sql("ingest", "column_types"),
                                             {"table": table, "columns": list(columns.columns)})]
    assert len(oids) == len(columns.columns), f"{table} lacks one of {columns.columns}"
    with cur.copy(columns.sql(statement)) as copy:
        copy.set_types(oids)
        for row in rows:
            copy.write_row(row)
