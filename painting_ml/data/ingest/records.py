"""The records an ingest writes, one type per table, and the column lists derived from them.

Each record's fields are its table's columns in COPY order: the COPY statements, the staging
tables' upserts and the manifest query take their column lists from here (see
:mod:`painting_ml.data.ingest.load`), so a column is added in one place besides its migration.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, NamedTuple

from painting_ml.data.images import ImageProbe


class CatalogRow(NamedTuple):
    """One row of ``paintings``: a usable CSV line, where its file is and what decoding it found."""

    filename: str
    artist: str
    title: str | None
    style: str | None
    genre: str | None
    date: str | None
    source: str | None
    artist_group: str | None
    in_train: bool | None
    meta_width: int | None  # pixelsx / pixelsy as the CSV claims them
    meta_height: int | None
    size_bytes: int | None
    data_root: str
    rel_path: str
    width: int  # as decoded
    height: int
    mode: str
    source_csv: str
    reduced_path: str | None
    sha256: str | None = None  # of the file's bytes
    phash: int | None = None  # 64-bit perceptual hash, signed (see painting_ml.data.identity)


class Reject(NamedTuple):
    """One row of ``rejects``: a CSV line that cannot be loaded, and why."""

    data_root: str
    source_csv: str
    line_no: int  # 1-based data row number in the CSV
    filename: str
    reason: str
    detail: str


# The probe's own fields, in their declared order: a field added to ImageProbe (with its column in
# ingest_files) is stored and reused without touching this package.
PROBE_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ImageProbe))
_probe_values = operator.attrgetter(*PROBE_COLUMNS)  # a tuple in PROBE_COLUMNS order, read in C


class FileRecord(NamedTuple):
    """One row of the per-file manifest ``ingest_files``: an image file as the ingest saw it
    (size, mtime), the hash of the CSV row that leads to it, and what probing it found under which
    recipe. An unchanged file with the same recipe reuses ``probe`` instead of being decoded."""

    data_root: str
    rel_path: str
    size_bytes: int
    mtime_ns: int
    row_hash: str
    recipe: str
    probe: ImageProbe

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FileRecord:
        """The record of an ``ingest_files`` row read by :data:`FILE_COLUMNS` (NULL: the probe
        field's default)."""
        probe = ImageProbe(**{c: value for c in PROBE_COLUMNS if (value := row[c]) is not None})
        return cls(row["data_root"], row["rel_path"], row["size_bytes"], row["mtime_ns"], row["row_hash"],
                   row["recipe"], probe)

    def values(self) -> tuple[object, ...]:
        """The row in :data:`FILE_COLUMNS` order; an empty probe field is stored as NULL."""
        return (self.data_root, self.rel_path, self.size_bytes, self.mtime_ns, self.row_hash, self.recipe,
                *[value or None for value in _probe_values(self.probe)])


PAINTING_COLUMNS: tuple[str, ...] = CatalogRow._fields
# A catalog row is identified by these; every other column is rewritten when it changed.
PAINTING_KEY = ("data_root", "filename")
REJECT_COLUMNS: tuple[str, ...] = Reject._fields
FILE_COLUMNS: tuple[str, ...] = (*(f for f in FileRecord._fields if f != "probe"), *PROBE_COLUMNS)
FILE_KEY = ("data_root", "rel_path")
