import shutil

import psycopg
import pytest
from PIL import Image

from painting_ml import catalog
from painting_ml.exceptions import DataError


def _counts(url):
    with psycopg.connect(url) as conn:
        return (conn.execute("SELECT count(*) FROM paintings").fetchone()[0],
                conn.execute("SELECT reason, count(*) FROM rejects GROUP BY 1 ORDER BY 1").fetchall())


def test_ingest_loads_good_rows_and_rejects_the_rest(clean_db, tiny_data):
    summary = catalog.ingest(tiny_data, clean_db)
    assert summary.rows == summary.loaded + summary.rejected
    paintings, reasons = _counts(clean_db)
    assert paintings == summary.loaded
    assert dict(reasons) == {"empty_file": 1, "missing_file": 1, "undecodable": 2}
    with psycopg.connect(clean_db) as conn:
        modes = dict(conn.execute("SELECT mode, count(*) FROM paintings GROUP BY 1").fetchall())
        width, height = conn.execute("SELECT width, height FROM paintings ORDER BY filename LIMIT 1").fetchone()
        detail = conn.execute("SELECT line_no, filename, detail FROM rejects WHERE reason = 'missing_file'").fetchone()
    assert "L" in modes and "RGB" in modes
    assert 0 < width <= 48 and 0 < height <= 48
    assert detail[0] == summary.rows and detail[1].endswith(".jpg") and "train" in detail[2]


def test_ingest_twice_changes_no_counts(clean_db, tiny_data):
    first = catalog.ingest(tiny_data, clean_db)
    before = _counts(clean_db)
    second = catalog.ingest(tiny_data, clean_db)
    assert _counts(clean_db) == before
    assert (first.loaded, first.rejected) == (second.loaded, second.rejected)


def test_nested_kaggle_folders_and_unsafe_names(clean_db, tmp_path, tiny_data):
    data = tmp_path / "kaggle"
    (data / "train_1" / "train_1").mkdir(parents=True)
    (data / "test").mkdir()
    src = next((tiny_data / "train").glob("*.jpg"))
    for name in ("1.jpg", "2.jpg"):
        Image.new("RGB", (40, 30), "red").save(data / "train_1" / "train_1" / name)
    Image.new("L", (20, 50), 128).save(data / "test" / "3.jpg")
    shutil.copy(src, tmp_path / "outside.jpg")
    (data / "all_data_info.csv").write_text(
        "artist,date,genre,pixelsx,pixelsy,size_bytes,source,style,title,artist_group,in_train,new_filename\n"
        'A,,,40,30,,,,"Title, with ""quotes""",train_and_test,True,1.jpg\n'
        "B,c.1890,,40,30,,,,,train_and_test,True,2.jpg\n"
        "C,,,20,50,,,,,train_and_test,False,3.jpg\n"
        "A,,,40,30,,,,dup,train_and_test,True,1.jpg\n"
        "D,,,1,1,,,,,train_and_test,True,../outside.jpg\n"
        "D,,,1,1,,,,,train_and_test,True,/etc/passwd\n"
        ",,,1,1,,,,,train_and_test,True,2.jpg\n",
        encoding="utf-8",
    )
    summary = catalog.ingest(data, clean_db)
    assert (summary.loaded, summary.rejected) == (3, 4)
    with psycopg.connect(clean_db) as conn:
        rows = dict(conn.execute("SELECT filename, rel_path FROM paintings").fetchall())
        title = conn.execute("SELECT title, date FROM paintings WHERE filename = '1.jpg'").fetchone()
        rejects = conn.execute("SELECT line_no, reason FROM rejects ORDER BY line_no").fetchall()
    assert rows["1.jpg"] == "train_1/train_1/1.jpg" and rows["3.jpg"] == "test/3.jpg"
    assert title == ('Title, with "quotes"', None)
    assert rejects == [(4, "duplicate_row"), (5, "unsafe_path"), (6, "unsafe_path"), (7, "duplicate_row")]


def test_train_info_only(clean_db, tmp_path):
    data = tmp_path / "ti"
    (data / "train").mkdir(parents=True)
    Image.new("RGB", (16, 16), "blue").save(data / "train" / "9.jpg")
    (data / "train_info.csv").write_text("filename,artist,title,style,genre,date\n9.jpg,Zoë,t,s,g,1900\n",
                                         encoding="utf-8")
    assert catalog.ingest(data, clean_db).loaded == 1


@pytest.mark.parametrize("content,message", [
    ("", "is empty"),
    ("artist;new_filename\nA;1.jpg\n", "lacks column(s)"),
])
def test_malformed_csv_is_one_clear_error(clean_db, tmp_path, content, message):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "all_data_info.csv").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        catalog.ingest(data, clean_db)
    assert "all_data_info.csv" in str(err.value)


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist; pass --data-dir"):
        catalog.read_metadata(tmp_path / "nope")


def test_probe_image_reasons(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"hello")
    (tmp_path / "dir.jpg").mkdir()
    Image.new("CMYK", (8, 8)).save(tmp_path / "cmyk.jpg")
    assert catalog.probe_image(tmp_path / "empty.jpg").reason == "empty_file"
    assert catalog.probe_image(tmp_path / "junk.jpg").reason == "undecodable"
    assert catalog.probe_image(tmp_path / "dir.jpg").reason == "not_a_file"
    ok = catalog.probe_image(tmp_path / "cmyk.jpg")
    assert (ok.reason, ok.mode, ok.width) == ("", "CMYK", 8)


def test_decompression_bombs_are_reduced_or_rejected(clean_db, tmp_path, monkeypatch):
    data = tmp_path / "bombs"
    (data / "train").mkdir(parents=True)
    Image.new("RGB", (400, 300), "green").save(data / "train" / "1.jpg", quality=90)
    Image.new("RGB", (400, 300), "green").save(data / "train" / "2.jpg", format="PNG")  # PNG behind .jpg
    Image.new("RGB", (20, 20), "green").save(data / "train" / "3.jpg")
    (data / "all_data_info.csv").write_text(
        "artist,new_filename\nA,1.jpg\nA,2.jpg\nA,3.jpg\n", encoding="utf-8")
    # 400x300 = 120,000 px is more than twice this limit: PIL refuses it outright.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    summary = catalog.ingest(data, clean_db)
    assert Image.MAX_IMAGE_PIXELS == 50_000  # never disabled
    assert (summary.loaded, summary.rejected) == (2, 1)
    with psycopg.connect(clean_db) as conn:
        width, height, reduced = conn.execute(
            "SELECT width, height, reduced_path FROM paintings WHERE filename = '1.jpg'").fetchone()
        reason = conn.execute("SELECT reason, detail FROM rejects WHERE filename = '2.jpg'").fetchone()
    assert (width, height) == (400, 300)
    with Image.open(reduced) as small:
        assert small.width * small.height <= 50_000
    assert reason[0] == "decompression_bomb" and "only JPEGs" in reason[1]


def test_csv_quirks_newlines_bom_empty_fields(clean_db, tmp_path):
    data = tmp_path / "quirks"
    (data / "test").mkdir(parents=True)
    Image.new("P", (10, 10)).save(data / "test" / "5.jpg", format="PNG")
    Image.new("RGBA", (10, 10)).save(data / "test" / "6.jpg", format="PNG")
    text = ("artist,date,genre,style,title,new_filename\n"
            'Ōta Zoë,c.1890,,,"Line one,\nline ""two""",5.jpg\n'
            "Ōta Zoë,,,,,6.jpg\n")
    (data / "all_data_info.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert catalog.ingest(data, clean_db).loaded == 2
    with psycopg.connect(clean_db) as conn:
        rows = conn.execute("SELECT artist, title, date, style, mode FROM paintings ORDER BY filename").fetchall()
    assert rows == [("Ōta Zoë", 'Line one,\nline "two"', "c.1890", None, "P"), ("Ōta Zoë", None, None, None, "RGBA")]


def test_ingest_if_changed_only_ingests_new_or_changed_files(clean_db, tiny_data, tmp_path):
    import os
    import shutil

    from painting_ml.catalog import ingest_if_changed, scan_fingerprint

    data = tmp_path / "watched"
    shutil.copytree(tiny_data, data)
    first = ingest_if_changed(data, clean_db)
    assert first is not None and first["loaded"] > 0
    assert ingest_if_changed(data, clean_db) is None  # nothing changed
    fp, files = scan_fingerprint(data)
    some = next((data / "test").iterdir())
    os.utime(some, ns=(some.stat().st_atime_ns, some.stat().st_mtime_ns + 10**9))
    assert scan_fingerprint(data)[0] != fp and scan_fingerprint(data)[1] == files
    again = ingest_if_changed(data, clean_db)
    assert again is not None and again["loaded"] == first["loaded"]
    with psycopg.connect(clean_db) as conn:  # the catalog was emptied: ingest again even if files did not change
        conn.execute("TRUNCATE paintings CASCADE")
    assert ingest_if_changed(data, clean_db) is not None


def test_scan_fingerprint_of_a_missing_folder_names_it(tmp_path):
    from painting_ml.catalog import scan_fingerprint
    from painting_ml.exceptions import DataError

    with pytest.raises(DataError, match="nowhere does not exist"):
        scan_fingerprint(tmp_path / "nowhere")
