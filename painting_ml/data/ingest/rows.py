"""The metadata CSV: reading ``all_data_info.csv`` (or ``train_info.csv``) into rows, and the
checks one row must pass before its file is looked for.

File names are read in Unicode NFC, so a name matches its file whichever normal form either
was written in. File-level problems (not UTF-8, no header, missing columns, another delimiter) are one
:class:`~painting_ml.core.errors.DataError` naming the file, the line and the fix; a problem of
one row makes that row a reject, never the whole file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NamedTuple

from painting_ml.core.errors import DataError

OPTIONAL_COLUMNS = ("title", "style", "genre", "date", "source", "artist_group", "in_train",
                    "pixelsx", "pixelsy", "size_bytes")
#: The largest value one CSV field may hold (UTF-8 bytes); a longer one makes its row a
#: ``bad_value`` reject. No field size limit of the csv module ever fails a file.
MAX_FIELD_BYTES = 64 * 1024
# Columns stored as integers, with the range of their database type.
_INT_COLUMNS = {"pixelsx": (0, 2**31 - 1), "pixelsy": (0, 2**31 - 1), "size_bytes": (0, 2**63 - 1)}


class RowProblem(NamedTuple):
    """Why a row is rejected: the ``rejects`` reason and its detail."""

    reason: str
    detail: str


@dataclass(frozen=True)
class CsvRow:
    """One data row of the metadata CSV: its 1-based data row number, the file line it starts on,
    and its fields by column name (None when the row cannot be read; ``problem`` says why)."""

    line_no: int
    file_line: int
    fields: dict[str, str] | None
    problem: RowProblem | None = None


def read_metadata(data_dir: Path) -> tuple[list[CsvRow], str]:
    """Read the metadata CSV into rows with Kaggle's all_data_info columns (strings).

    Parsed with the ``csv`` module rather than pandas so that each row keeps its own field count:
    a row with too many or too few fields becomes one ``wrong_field_count`` reject instead of
    shifting the columns of every row or failing the whole file. Optional columns the file lacks
    are read as empty, so every row's fields have the same keys.

    Args:
        data_dir: the data folder.

    Returns:
        The rows and the CSV's file name.

    Raises:
        DataError: the folder, the CSV or its header is missing or unreadable.
    """
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist; pass --data-dir pointing at the "
                        "folder that holds all_data_info.csv and the train*/test image folders")
    adi, ti = data_dir / "all_data_info.csv", data_dir / "train_info.csv"
    rename: dict[str, str]
    if adi.is_file():
        path, rename = adi, {}
        required = {"artist", "new_filename"}
    elif ti.is_file():
        path, rename = ti, {"filename": "new_filename"}
        required = {"artist", "filename"}
    else:
        raise DataError(f"no all_data_info.csv or train_info.csv in {data_dir}; "
                        "download them from Kaggle's Painter by Numbers or run `painting-ml synth`")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path} is not a valid UTF-8 CSV (line {line}, byte {exc.start}: {exc.reason}); "
                        "re-export it as comma-separated UTF-8") from None
    # The csv module refuses a field over 128 KiB by default, failing the whole file; the text is in
    # memory already, so no field can be longer than it. Oversized values are rejected per row.
    if csv.field_size_limit() <= len(text):
        csv.field_size_limit(min(sys.maxsize, 2**62))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise DataError(f"{path} is empty; it needs a header row and data rows")
        missing = required - set(header)
        if missing and len(header) == 1:
            delim = next((d for d in (";", "\t", "|") if d in header[0]), None)
            if delim:
                raise DataError(f"{path} looks {delim!r}-delimited (header {header[0][:60]!r}); lacks column(s) "
                                f"{', '.join(sorted(missing))} — re-export it comma-separated")
        if missing:
            raise DataError(f"{path} lacks column(s) {', '.join(sorted(missing))} (has: "
                            f"{', '.join(header)}); is it comma-separated with a header row?")
        columns = [rename.get(h, h) for h in header]
        absent = [col for col in OPTIONAL_COLUMNS if col not in columns]
        keys, blanks = columns + absent, [""] * len(absent)
        rows: list[CsvRow] = []
        file_line = reader.line_num + 1
        for record in reader:
            start, file_line = file_line, reader.line_num + 1
            if not record:
                continue  # a blank line
            line_no = len(rows) + 1
            if len(record) != len(columns):
                rows.append(CsvRow(line_no, start, None, RowProblem(
                    "wrong_field_count",
                    f"file line {start}: {len(record)} fields, the header has {len(columns)}")))
                continue
            fields = dict(zip(keys, record + blanks, strict=True))
            # One name per file: macOS writes names in NFD, Windows tools in NFC; the catalog keys
            # and the image index (scan.index_images) both use NFC.
            fields["new_filename"] = unicodedata.normalize("NFC", fields["new_filename"])
            rows.append(CsvRow(line_no, start, fields))
    except csv.Error as exc:
        raise DataError(f"{path} cannot be read as CSV at file line {reader.line_num} ({exc}); "
                        "re-export it as comma-separated UTF-8") from None
    if not rows:
        raise DataError(f"{path} has a header but no data rows; add paintings to it (or point data_dir "
                        "at the folder with the full CSV)")
    return rows, path.name


def row_hash(fields: dict[str, str], source_csv: str) -> str:
    """A stable hash of one CSV row's fields (in the CSV's column order) and the CSV's name: the
    manifest's record of the row its file was loaded with."""
    text = "\x1f".join(fields.values()) + "\x1e" + "\x1f".join(fields) + "\x1e" + source_csv
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def safe_name(filename: str) -> str | None:
    """Why a CSV file name is unsafe, or None: names must stay inside the data folder."""
    if not filename:
        return "empty file name"
    if filename.startswith(("/", "\\")) or (len(filename) > 1 and filename[1] == ":"):
        return "absolute path"
    parts = filename.replace("\\", "/").split("/")
    if ".." in parts:
        return "path escapes the data folder"
    if len(parts) > 1:
        return "file name contains a folder"
    return None


def row_numbers(fields: dict[str, str]) -> tuple[dict[str, int | None], str | None]:
    """The row's integer columns by name (empty: None), or why one of its values cannot be stored."""
    for col, value in fields.items():
        # 4 bytes per character at most: only a long value is encoded to be measured.
        if len(value) * 4 > MAX_FIELD_BYTES and len(value.encode("utf-8", "surrogatepass")) > MAX_FIELD_BYTES:
            return {}, (f"{col} is {len(value.encode('utf-8', 'surrogatepass')):,} bytes long, over the limit of "
                        f"{MAX_FIELD_BYTES // 1024} KB per value")
    if "\x00" in "".join(fields.values()):  # one scan per row; the column is looked up only then
        col = next(c for c, value in fields.items() if "\x00" in value)
        return {}, f"{col} contains a NUL byte"
    numbers: dict[str, int | None] = {}
    for col in _INT_COLUMNS:
        numbers[col], problem = _whole_number(col, fields[col])
        if problem:
            return {}, problem
    return numbers, None


def _whole_number(col: str, value: str) -> tuple[int | None, str | None]:
    """``value`` as an int in ``col``'s range (empty -> None), or why it is not one."""
    value = value.strip()
    if not value:
        return None, None
    lo, hi = _INT_COLUMNS[col]
    if value.isascii() and value.isdigit():  # the common case, without Decimal
        n = int(value)
        if n <= hi:
            return n, None
    try:
        d = Decimal(value)
    except InvalidOperation:
        return None, f"{col} {value[:40]!r} is not a number"
    if not d.is_finite():
        return None, f"{col} {value[:40]!r} is not a finite number"
    if d < lo or d > hi:
        return None, f"{col} {value[:40]!r} is out of range ({lo}..{hi})"
    if d != d.to_integral_value():
        return None, f"{col} {value[:40]!r} is not a whole number"
    return int(d), None
