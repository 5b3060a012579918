"""Bad input never crashes a run or loses a row: the generated corpus, case by case."""

from __future__ import annotations

import psycopg
import pytest
from badinput import CSV_CASES, write_csv_case, write_row_corpus

from painting_ml.cli import main
from painting_ml.core.errors import DataError
from painting_ml.data import images
from painting_ml.data import ingest as catalog

pytestmark = pytest.mark.db


def test_every_row_quirk_is_loaded_or_rejected_with_its_reason(clean_db, tmp_path):
    data = tmp_path / "corpus"
    expected = write_row_corpus(data)
    summary = catalog.ingest(data, clean_db)
    with psycopg.connect(clean_db) as conn:
        loaded = {r[0] for r in conn.execute("SELECT filename FROM paintings")}
        rejects = conn.execute("SELECT line_no, filename, reason, detail FROM rejects ORDER BY line_no").fetchall()
        odd = dict(conn.execute("SELECT filename, title FROM paintings "
                                "WHERE filename IN ('500.jpg', '501.jpg')").fetchall())
        modes = dict(conn.execute("SELECT filename, mode FROM paintings WHERE filename LIKE '50_.%'").fetchall())
    good = {f for f, reason in expected.items() if reason is None}
    assert loaded == good  # every good row, nothing else
    by_file = {}
    for line_no, filename, reason, detail in rejects:
        by_file.setdefault(filename, []).append(reason)
        assert line_no >= 1 and detail  # the row number and why, for the person fixing the CSV
    for filename, reason in expected.items():
        if reason and reason != "duplicate_row":
            assert reason in by_file.get(filename, []), (filename, by_file.get(filename))
    assert by_file["1000.jpg"] == ["duplicate_row"]
    assert summary.rows == summary.loaded + summary.rejected == len(expected) + 1
    assert odd["500.jpg"] == 'A "quoted", comma, title' and odd["501.jpg"] == "multi\nline title"
    assert modes == {"500.jpg": "L", "501.jpg": "CMYK", "502.jpg": "P", "503.png": "RGBA"}


def test_ingest_three_times_gives_identical_tables(clean_db, tmp_path):
    data = tmp_path / "corpus"
    write_row_corpus(data)
    snapshots = []
    for _ in range(3):
        catalog.ingest(data, clean_db)
        with psycopg.connect(clean_db) as conn:
            snapshots.append((conn.execute("SELECT filename, artist, title, width, height "
                                           "FROM paintings ORDER BY 1").fetchall(),
                              conn.execute("SELECT line_no, filename, reason FROM rejects ORDER BY 1").fetchall()))
    assert snapshots[0] == snapshots[1] == snapshots[2]


@pytest.mark.parametrize("name,text,message", CSV_CASES, ids=[c[0] for c in CSV_CASES])
def test_csv_level_problems_are_one_clear_error(clean_db, tmp_path, capsys, name, text, message):
    data = write_csv_case(tmp_path / "case", text)
    with pytest.raises(DataError) as err:
        catalog.ingest(data, clean_db)
    assert message in str(err.value) and str(data) in str(err.value)
    assert main(["ingest", "--data-dir", str(data)]) == 2
    out = capsys.readouterr().err.strip().splitlines()
    assert len(out) == 1 and message in out[0] and "Traceback" not in out[0]
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM paintings").fetchone()[0] == 0


def test_a_data_folder_that_does_not_exist(clean_db, tmp_path, capsys):
    assert main(["ingest", "--data-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere does not exist" in err and len(err.strip().splitlines()) == 1


def test_unreadable_file_is_rejected_not_fatal(clean_db, tmp_path, monkeypatch):
    """Permissions cannot be taken from root here, so the open() that fails is simulated."""
    data = tmp_path / "corpus"
    expected = write_row_corpus(data)
    real_open = images.open_trainable

    def deny(path, *a, **kw):
        if str(path).endswith("1010.jpg"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(images, "open_trainable", deny)
    catalog.ingest(data, clean_db)
    with psycopg.connect(clean_db) as conn:
        reason = conn.execute("SELECT reason, detail FROM rejects WHERE filename = '1010.jpg'").fetchone()
        loaded = conn.execute("SELECT count(*) FROM paintings").fetchone()[0]
    assert reason[0] == "unreadable" and "permission denied" in reason[1]
    assert loaded == sum(r is None for r in expected.values()) - 1
