import shutil

import psycopg
import pytest
from PIL import Image

from painting_ml.core.errors import DataError
from painting_ml.data import images
from painting_ml.data import ingest as catalog
from painting_ml.data.ingest import plan as planning
from painting_ml.data.ingest.scan import FileStat

pytestmark = pytest.mark.db


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
    assert images.probe_image(tmp_path / "empty.jpg").reason == "empty_file"
    assert images.probe_image(tmp_path / "junk.jpg").reason == "undecodable"
    assert images.probe_image(tmp_path / "dir.jpg").reason == "not_a_file"
    ok = images.probe_image(tmp_path / "cmyk.jpg")
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

    from painting_ml.data.ingest import ingest_if_changed, scan_fingerprint

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
    from painting_ml.core.errors import DataError
    from painting_ml.data.ingest import scan_fingerprint

    with pytest.raises(DataError, match="nowhere does not exist"):
        scan_fingerprint(tmp_path / "nowhere")


# --- The catalog mirrors the folder; folders are first-class (issue 14) ---------------------------

import csv  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

from painting_ml.core.config import RunConfig  # noqa: E402
from painting_ml.data.selection import select_artists, usable_counts  # noqa: E402
from painting_ml.data.versions import create_dataset_version, load_items  # noqa: E402


def _read_csv(data):
    with open(data / "all_data_info.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_csv(data, rows):
    with open(data / "all_data_info.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _live(url, root):
    with psycopg.connect(url) as conn:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT filename, artist, rel_path, in_train, source, artist_group, meta_width, meta_height, size_bytes, "
            "source_csv FROM paintings WHERE data_root = %s AND gone_at IS NULL", (str(root),))}


def test_catalog_mirrors_the_folder(clean_db, tiny_data, tmp_path):
    data = tmp_path / "mirror"
    shutil.copytree(tiny_data, data)
    catalog.ingest(data, clean_db)
    cfg = RunConfig(data_dir=str(data), n_artists=3, seed=5)
    old_version = create_dataset_version(cfg, select_artists(cfg, clean_db), clean_db)
    _, old_items = load_items(old_version, clean_db)
    used = {i.filename for i in old_items}
    rows = _read_csv(data)
    live_rows = [r for r in rows if r["new_filename"] in _live(clean_db, data)]
    in_version = [r for r in live_rows if r["new_filename"] in used]
    line_removed, file_deleted, now_broken, changed = (in_version[0], in_version[1], in_version[2], in_version[3])
    unused = next(r for r in live_rows if r["new_filename"] not in used)
    # 1. CSV line removed (one referenced by the version, one not); 2. file deleted; 3. file now garbage.
    rows = [r for r in rows if r not in (line_removed, unused)]
    path_of = {f: rel for f, (_, rel, *_) in _live(clean_db, data).items()}
    (data / path_of[file_deleted["new_filename"]]).unlink()
    (data / path_of[now_broken["new_filename"]]).write_bytes(b"not an image any more")
    # 4. Every column ingest writes changes for one row.
    changed.update(in_train="False" if changed["in_train"] == "True" else "True", source="elsewhere",
                   artist_group="test_only", pixelsx="1234", pixelsy="567", size_bytes="89")
    _write_csv(data, rows)
    summary = catalog.ingest(data, clean_db)
    assert summary.gone == 4

    live = _live(clean_db, data)
    for r in (line_removed, unused, file_deleted, now_broken):
        assert r["new_filename"] not in live
    expected = (changed["in_train"] == "True", "elsewhere", "test_only", 1234, 567, 89)
    assert live[changed["new_filename"]][2:8] == expected
    with psycopg.connect(clean_db) as conn:
        gone = dict(conn.execute("SELECT filename, gone_at IS NOT NULL FROM paintings WHERE data_root = %s",
                                 (str(data),)).fetchall())
        both = conn.execute("SELECT p.filename FROM paintings p JOIN rejects r ON r.data_root = p.data_root "
                            "AND r.filename = p.filename WHERE p.gone_at IS NULL AND r.reason <> 'duplicate_row'"
                            ).fetchall()
        rejected = dict(conn.execute("SELECT filename, reason FROM rejects").fetchall())
    # Referenced by the old version: kept as history, marked gone. Unreferenced: removed.
    assert all(gone[r["new_filename"]] for r in (line_removed, file_deleted, now_broken))
    assert unused["new_filename"] not in gone
    assert both == []  # a file is a live painting xor a reject
    assert rejected[file_deleted["new_filename"]] == "missing_file"
    assert rejected[now_broken["new_filename"]] == "undecodable"
    # Never selected again; the old version is history only; a new run gets a version of what is there.
    assert sum(usable_counts(str(data), clean_db).values()) == len(live)
    with pytest.raises(DataError, match=f"dataset version {old_version} uses 3 painting"):
        load_items(old_version, clean_db)
    _, history = load_items(old_version, clean_db, history=True)
    assert {i.filename for i in history if i.gone} == {
        line_removed["new_filename"], file_deleted["new_filename"], now_broken["new_filename"]}
    new_version = create_dataset_version(cfg, select_artists(cfg, clean_db), clean_db)
    assert new_version != old_version
    _, items = load_items(new_version, clean_db)
    assert all(Path(i.path).is_file() and not i.gone for i in items)
    # A file that comes back is live again.
    rows.append(unused)
    _write_csv(data, rows)
    catalog.ingest(data, clean_db)
    assert unused["new_filename"] in _live(clean_db, data)


def test_two_folders_in_one_database_never_touch_each_other(clean_db, tiny_data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_data, a)
    shutil.copytree(tiny_data, b)
    rows = _read_csv(b)  # same file names, other artists, and one rejected file
    for r in rows:
        r["artist"] = "B " + r["artist"]
    _write_csv(b, rows)
    catalog.ingest(a, clean_db)

    def snapshot(root):
        with psycopg.connect(clean_db) as conn:
            return (conn.execute("SELECT * FROM paintings WHERE data_root = %s ORDER BY filename",
                                 (str(root),)).fetchall(),
                    conn.execute("SELECT data_root, source_csv, line_no, filename, reason, detail FROM rejects "
                                 "WHERE data_root = %s ORDER BY line_no", (str(root),)).fetchall())

    before = snapshot(a)
    assert before[0] and before[1]
    summary_b = catalog.ingest(b, clean_db)
    first_b = next(r for r in rows if (b / "train" / r["new_filename"]).is_file())
    (b / "train" / first_b["new_filename"]).unlink()  # B loses a file; A must not
    catalog.ingest(b, clean_db)
    assert snapshot(a) == before
    assert summary_b.paintings_total == len(before[0])  # per-folder totals
    assert all(not artist.startswith("B ") for artist in usable_counts(str(a), clean_db))
    assert all(artist.startswith("B ") for artist in usable_counts(str(b), clean_db))
    cfg_a, cfg_b = (RunConfig(data_dir=str(d), n_artists=3, seed=5) for d in (a, b))
    va = create_dataset_version(cfg_a, select_artists(cfg_a, clean_db), clean_db)
    vb = create_dataset_version(cfg_b, select_artists(cfg_b, clean_db), clean_db)
    assert va != vb
    _, items_a = load_items(va, clean_db)
    _, items_b = load_items(vb, clean_db)
    assert all(i.path.startswith(str(a) + "/") for i in items_a)
    assert all(i.path.startswith(str(b) + "/") for i in items_b)


def test_symlinks_are_followed_only_inside_the_data_folder(clean_db, tmp_path):
    data = tmp_path / "links"
    (data / "train").mkdir(parents=True)
    (data / "test").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (20, 20), "red").save(data / "train" / "1.jpg")
    Image.new("RGB", (20, 20), "blue").save(outside / "secret.jpg")
    (data / "test" / "2.jpg").symlink_to(data / "train" / "1.jpg")      # inside: fine
    (data / "test" / "3.jpg").symlink_to(outside / "secret.jpg")        # outside: refused
    (data / "train_1").symlink_to(outside, target_is_directory=True)    # a whole folder outside
    (data / "all_data_info.csv").write_text("artist,new_filename\nA,1.jpg\nA,2.jpg\nA,3.jpg\nA,secret.jpg\n")
    summary = catalog.ingest(data, clean_db)
    assert (summary.loaded, summary.rejected) == (2, 2)
    with psycopg.connect(clean_db) as conn:
        rejects = dict(conn.execute("SELECT filename, reason FROM rejects").fetchall())
    assert rejects == {"3.jpg": "unsafe_path", "secret.jpg": "unsafe_path"}


def test_names_with_a_leading_space_or_dot_and_ambiguous_names(clean_db, tmp_path):
    data = tmp_path / "names"
    (data / "train").mkdir(parents=True)
    (data / "test").mkdir()
    for name in (" 1.jpg", ".2.jpg", "3.jpg"):
        Image.new("RGB", (20, 20), "red").save(data / "train" / name, format="JPEG")
    Image.new("RGB", (20, 20), "blue").save(data / "test" / "3.jpg")
    (data / "all_data_info.csv").write_text('artist,new_filename\nA," 1.jpg"\nA,.2.jpg\nA,3.jpg\n')
    catalog.ingest(data, clean_db)
    with psycopg.connect(clean_db) as conn:
        loaded = {r[0] for r in conn.execute("SELECT filename FROM paintings")}
        reason, detail = conn.execute("SELECT reason, detail FROM rejects").fetchone()
    assert loaded == {" 1.jpg", ".2.jpg"}
    assert reason == "ambiguous_file" and "test/3.jpg" in detail and "train/3.jpg" in detail


BAD_VALUES = [
    # (CSV line after "artist,title,pixelsx,pixelsy,size_bytes,new_filename", expected reason, detail fragment)
    ("A,with\x00nul,10,10,1,{f}", "bad_value", "title contains a NUL byte"),
    ("A,t,1e400,10,1,{f}", "bad_value", "pixelsx '1e400' is out of range"),
    ("A,t,inf,10,1,{f}", "bad_value", "is not a finite number"),
    ("A,t,nan,10,1,{f}", "bad_value", "is not a finite number"),
    ("A,t,10,99999999999,1,{f}", "bad_value", "pixelsy '99999999999' is out of range"),
    ("A,t,10,10,-1,{f}", "bad_value", "size_bytes '-1' is out of range"),
    ("A,t,10.5,10,1,{f}", "bad_value", "is not a whole number"),
    ("A,t,ten,10,1,{f}", "bad_value", "is not a number"),
    ("A,t,10,10,1,{f},extra", "wrong_field_count", "7 fields, the header has 6"),
    ("A,t,10,{f}", "wrong_field_count", "4 fields, the header has 6"),
]


@pytest.mark.parametrize("first", [True, False], ids=["bad rows first", "bad rows last"])
def test_bad_csv_values_are_rejects_with_line_and_reason(clean_db, tmp_path, capsys, first):
    from painting_ml.cli import main

    data = tmp_path / "values"
    (data / "train").mkdir(parents=True)
    good, bad = [], []
    for k in range(3):
        Image.new("RGB", (20, 20), "red").save(data / "train" / f"g{k}.jpg")
        good.append(f"A,good,20,20,100,g{k}.jpg")
    for k, (line, _, _) in enumerate(BAD_VALUES):
        Image.new("RGB", (20, 20), "red").save(data / "train" / f"b{k}.jpg")
        bad.append(line.format(f=f"b{k}.jpg"))
    lines = bad + good if first else good + bad
    (data / "all_data_info.csv").write_text("artist,title,pixelsx,pixelsy,size_bytes,new_filename\n"
                                            + "\n".join(lines) + "\n", encoding="utf-8")
    assert main(["ingest", "--data-dir", str(data)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    with psycopg.connect(clean_db) as conn:
        loaded = {r[0] for r in conn.execute("SELECT filename FROM paintings")}
        rejects = {r[0]: r[1:] for r in conn.execute("SELECT line_no, reason, detail FROM rejects")}
    assert loaded == {"g0.jpg", "g1.jpg", "g2.jpg"}
    offset = 0 if first else len(good)
    for k, (_, reason, fragment) in enumerate(BAD_VALUES):
        line_no = offset + k + 1
        assert rejects[line_no][0] == reason, (line_no, rejects[line_no])
        assert fragment in rejects[line_no][1] and f"file line {line_no + 1}" in rejects[line_no][1]


def test_bad_utf8_names_its_line(clean_db, tmp_path):
    data = tmp_path / "latin1"
    data.mkdir()
    (data / "all_data_info.csv").write_bytes(b"artist,new_filename\nA,1.jpg\nB,2.jpg\nZo\xeb,3.jpg\n")
    with pytest.raises(DataError, match=r"is not a valid UTF-8 CSV \(line 4"):
        catalog.ingest(data, clean_db)


def test_bomb_handling_is_thread_safe(clean_db, tmp_path, monkeypatch):
    """Many images past the limit, probed by the 4-thread pool: none is decoded at full size, no
    DecompressionBombWarning is raised or filtered, and no warnings filter is left behind."""
    from PIL import ImageFile

    data = tmp_path / "bombs"
    (data / "train").mkdir(parents=True)
    lines = ["artist,new_filename"]
    for k in range(16):
        # 260x260 = 67,600 px: between 1x and 2x the limit, where Image.open would *warn*.
        Image.new("RGB", (260, 260), (k * 10, 80, 120)).save(data / "train" / f"p{k}.png")
        Image.new("RGB", (260, 260), (k * 10, 80, 120)).save(data / "train" / f"j{k}.jpg", quality=85)
        lines += [f"A,p{k}.png", f"A,j{k}.jpg"]
    (data / "all_data_info.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    decoded = []
    real_load = ImageFile.ImageFile.load

    def spy(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    filters_before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inside = list(warnings.filters)
        summary = catalog.ingest(data, clean_db)
        assert list(warnings.filters) == inside  # ingest added no filter
    assert list(warnings.filters) == filters_before
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert decoded and max(w * h for w, h in decoded) <= 50_000  # nothing decoded at full size
    assert (summary.loaded, summary.rejected) == (16, 16)
    with psycopg.connect(clean_db) as conn:
        reasons = {r[0] for r in conn.execute("SELECT reason FROM rejects")}
        reduced = [r[0] for r in conn.execute("SELECT reduced_path FROM paintings")]
    assert reasons == {"decompression_bomb"}
    for path in reduced:
        with Image.open(path) as small:
            assert small.width * small.height <= 50_000


def test_reduced_copies_are_per_root_and_content_addressed(clean_db, tmp_path, monkeypatch, painting_home):
    from painting_ml.core import settings
    from painting_ml.learn.inference import checked_image_paths

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    roots = []
    for name, color in (("a", "red"), ("b", "blue")):
        data = tmp_path / name
        (data / "train").mkdir(parents=True)
        Image.new("RGB", (400, 300), color).save(data / "train" / "1.jpg")
        (data / "all_data_info.csv").write_text("artist,new_filename\nA,1.jpg\n")
        catalog.ingest(data, clean_db)
        roots.append(data)
    with psycopg.connect(clean_db) as conn:
        copies = dict(conn.execute("SELECT data_root, reduced_path FROM paintings").fetchall())
    path_a, path_b = copies[str(roots[0])], copies[str(roots[1])]
    assert path_a != path_b and Path(path_a).parent != Path(path_b).parent
    before = Path(path_a).read_bytes()
    # predict on an unrelated large image with the same base name: its copy goes elsewhere.
    other = tmp_path / "elsewhere" / "1.jpg"
    other.parent.mkdir()
    Image.new("RGB", (400, 300), "green").save(other)
    settings.reload_settings()
    (predicted,) = checked_image_paths([str(other)])
    assert predicted not in (path_a, path_b)
    assert Path(path_a).read_bytes() == before
    with Image.open(path_a) as im:
        assert im.convert("RGB").getpixel((5, 5))[0] > 200  # still red


def test_migration_0003_upgrades_an_existing_database(server_url, tmp_path):
    """A database at migration 0002 with paintings, versions and rejects upgrades in place."""
    from painting_ml.core import db
    from painting_ml.core.settings import get_settings

    sql_dir = get_settings().sql_dir
    old = tmp_path / "sql"
    (old / "migrations").mkdir(parents=True)
    for p in sorted((sql_dir / "migrations").glob("000[12]_*.sql")):
        shutil.copy(p, old / "migrations" / p.name)
    # views.sql always matches the newest schema; the old state had its own views, irrelevant here.
    (old / "views.sql").write_text("SELECT 1;")
    url = db.create_database(server_url, "pm_mig")
    try:
        db.migrate(url, sql_dir=old)
        with psycopg.connect(url) as conn:
            conn.execute("INSERT INTO paintings (filename, artist, data_root, rel_path, width, height, mode, "
                         "source_csv) "
                         "VALUES ('1.jpg', 'A', '/data/x', 'train/1.jpg', 10, 10, 'RGB', 'all_data_info.csv')")
            conn.execute("INSERT INTO rejects (source_csv, line_no, filename, reason) "
                         "VALUES ('all_data_info.csv', 2, '2.jpg', 'missing_file')")
            vid = conn.execute("INSERT INTO dataset_versions (content_hash, config, artists, artist_counts) "
                               "VALUES ('h', '{}', '[\"A\"]', '{}') RETURNING id").fetchone()[0]
            conn.execute("INSERT INTO dataset_items VALUES (%s, '1.jpg', 'A', 0, 'train')", (vid,))
        assert "0003_catalog_roots" in db.migrate(url)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT data_root FROM dataset_items").fetchone()[0] == "/data/x"
            assert conn.execute("SELECT data_root FROM dataset_versions").fetchone()[0] == "/data/x"
            assert conn.execute("SELECT data_root FROM rejects").fetchone()[0] == "/data/x"
            # The same file name in a second folder is now a row of its own.
            conn.execute("INSERT INTO paintings (filename, artist, data_root, rel_path, width, height, mode, "
                         "source_csv) "
                         "VALUES ('1.jpg', 'B', '/data/y', 'train/1.jpg', 10, 10, 'RGB', 'all_data_info.csv')")
            assert conn.execute("SELECT count(*) FROM paintings").fetchone()[0] == 2
        assert db.migrate(url) == []
    finally:
        db.drop_database(server_url, url)


# --- Incremental ingest: the per-file manifest (issue 15) -----------------------------------------

def _count_probes(monkeypatch):
    calls = []
    real = planning.probe_image

    def counting(path, *args, **kwargs):
        calls.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(planning, "probe_image", counting)
    return calls


def test_one_changed_file_in_hundreds_is_the_only_decode(clean_db, tmp_path, monkeypatch):
    import os

    from painting_ml.data.synth import generate

    data = tmp_path / "hundreds"
    generate(data, artists=6, per_artist=50, size=24, seed=3, test_only_artists=0, broken=2)
    calls = _count_probes(monkeypatch)
    first = catalog.ingest_if_changed(data, clean_db)
    assert first["probed"] == len(calls) >= 300 and first["changed_rows"] == first["probed"]
    before = (_live(clean_db, data), _counts(clean_db))

    calls.clear()  # nothing changed: the CLI and the DAG both skip on the fingerprint
    assert catalog.ingest_if_changed(data, clean_db) is None and calls == []
    assert catalog.ingest(data, clean_db).probed == 0 and calls == []  # and a forced plan reuses all

    victim = next(f for f, (_, rel, *_) in before[0].items() if rel.startswith("train/"))
    path = data / before[0][victim][1]
    Image.new("RGB", (31, 17), "white").save(path, format="JPEG")  # replaced by a new picture
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    again = catalog.ingest_if_changed(data, clean_db)
    assert calls == [victim] and again["probed"] == 1 and again["changed_rows"] == 0
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT width, height FROM paintings WHERE data_root = %s AND filename = %s",
                            (str(data), victim)).fetchone() == (31, 17)
    assert _counts(clean_db) == before[1]

    calls.clear()  # a CSV row changed (its file did not): the row is rewritten, nothing decoded
    rows = _read_csv(data)
    rows[0]["title"] = "Renamed"
    _write_csv(data, rows)
    again = catalog.ingest_if_changed(data, clean_db)
    assert calls == [] and again["changed_rows"] == 1
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT title FROM paintings WHERE data_root = %s AND filename = %s",
                            (str(data), rows[0]["new_filename"])).fetchone() == ("Renamed",)

    calls.clear()  # a file removed: marked gone as before, and its manifest entry dropped
    gone = next(f for f in before[0] if f != victim)
    (data / before[0][gone][1]).unlink()
    again = catalog.ingest_if_changed(data, clean_db)
    assert calls == [] and again["gone"] == 1 and gone not in _live(clean_db, data)
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM ingest_files WHERE data_root = %s AND rel_path = %s",
                            (str(data), before[0][gone][1])).fetchone()[0] == 0

    calls.clear()  # --full decodes everything again, whatever the fingerprint and manifest say
    full = catalog.ingest_if_changed(data, clean_db, full=True)
    assert full["probed"] == len(calls) == first["probed"] - 1


def test_cli_ingest_records_the_fingerprint_the_dag_checks(clean_db, tmp_path, monkeypatch, capsys):
    import json

    from painting_ml.cli import main
    from painting_ml.data.synth import generate

    data = tmp_path / "cli"
    generate(data, artists=2, per_artist=5, size=24, seed=1, test_only_artists=0, broken=0)
    monkeypatch.setenv("PAINTING_DB_URL", clean_db)
    calls = _count_probes(monkeypatch)
    main(["ingest", "--data-dir", str(data), "--json"])
    decoded = len(calls)
    assert json.loads(capsys.readouterr().out)["probed"] == decoded >= 10
    assert catalog.ingest_if_changed(data, clean_db) is None  # the DAG's check sees the CLI's ingest
    main(["ingest", "--data-dir", str(data), "--json"])
    assert json.loads(capsys.readouterr().out) == {"unchanged": True, "data_dir": str(data)}
    main(["ingest", "--data-dir", str(data), "--full", "--json"])
    assert json.loads(capsys.readouterr().out)["probed"] == decoded and len(calls) == 2 * decoded


def test_workers_setting(monkeypatch):
    from painting_ml.core import settings
    from painting_ml.core.errors import ConfigError

    monkeypatch.delenv("PAINTING_WORKERS", raising=False)
    assert settings.reload_settings().workers == settings.available_cores() >= 1
    monkeypatch.setenv("PAINTING_WORKERS", "3")
    assert settings.reload_settings().workers == 3
    for bad in ("0", "many"):
        monkeypatch.setenv("PAINTING_WORKERS", bad)
        with pytest.raises(ConfigError, match="PAINTING_WORKERS"):
            settings.reload_settings()
    monkeypatch.delenv("PAINTING_WORKERS")
    settings.reload_settings()


def test_incremental_ingest_equals_a_full_one_after_moves_and_clashes(clean_db, tmp_path, monkeypatch):
    from painting_ml.data.synth import generate

    data = tmp_path / "moves"
    generate(data, artists=3, per_artist=8, size=24, seed=5, test_only_artists=0, broken=1)
    catalog.ingest(data, clean_db)
    live = _live(clean_db, data)
    moved, clashing = sorted(f for f, v in live.items() if v[1].startswith("train/"))[:2]
    (data / "train_2").mkdir()
    shutil.move(data / live[moved][1], data / "train_2" / moved)            # same name, another folder
    shutil.copy(data / live[clashing][1], data / "train_2" / clashing)      # now in two folders: ambiguous
    calls = _count_probes(monkeypatch)
    summary = catalog.ingest(data, clean_db)
    incremental = _live(clean_db, data)
    assert calls == [moved] and summary.probed == 1  # the moved file is a new path; the clash needs no decode
    assert incremental[moved][1] == f"train_2/{moved}" and clashing not in incremental
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT reason FROM rejects WHERE data_root = %s AND filename = %s",
                            (str(data), clashing)).fetchone() == ("ambiguous_file",)
    full = catalog.ingest(data, clean_db, full=True)
    assert _live(clean_db, data) == incremental and full.gone == 0 and full.loaded == summary.loaded


def test_incremental_load_falls_back_to_a_full_write_when_another_ingest_committed(clean_db, tmp_path, monkeypatch):
    from painting_ml.data.synth import generate

    data = tmp_path / "race"
    generate(data, artists=2, per_artist=6, size=24, seed=2, test_only_artists=0, broken=0)
    catalog.ingest(data, clean_db)
    rows = _read_csv(data)
    removed = rows.pop(0)  # a loaded painting's line
    _write_csv(data, rows)
    real_plan, nested = catalog.plan_ingest, []

    def plan_then_race(*args, **kwargs):
        plan = real_plan(*args, **kwargs)
        if not nested:  # another ingest of the folder commits between this plan and its load
            nested.append(None)
            nested[0] = catalog.ingest(data, clean_db)
        return plan

    monkeypatch.setattr(catalog, "plan_ingest", plan_then_race)
    writes = []
    real_load = catalog.load_rows
    monkeypatch.setattr(catalog, "load_rows", lambda conn, good, *a, **k: writes.append((len(good), a[3:], k))
                        or real_load(conn, good, *a, **k))
    summary = catalog.ingest(data, clean_db)
    assert nested[0].gone == 1 and summary.gone == 0
    outer = writes[-1]
    assert outer[0] == summary.loaded and outer[1] == () and outer[2] == {}  # every row, marked gone by difference
    assert removed["new_filename"] not in _live(clean_db, data) and len(_live(clean_db, data)) == summary.loaded


def test_a_converted_copy_that_went_away_is_made_again(clean_db, tmp_path, monkeypatch):
    data = tmp_path / "copies"
    (data / "train").mkdir(parents=True)
    Image.new("RGB", (400, 300), "green").save(data / "train" / "1.jpg", quality=90)
    Image.new("RGB", (20, 20), "green").save(data / "train" / "2.jpg")
    (data / "all_data_info.csv").write_text("artist,new_filename\nA,1.jpg\nA,2.jpg\n", encoding="utf-8")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)  # 1.jpg gets a reduced copy
    catalog.ingest(data, clean_db)
    with psycopg.connect(clean_db) as conn:
        (reduced,) = conn.execute("SELECT reduced_path FROM paintings WHERE filename = '1.jpg'").fetchone()
    Path(reduced).unlink()
    calls = _count_probes(monkeypatch)
    assert catalog.ingest(data, clean_db).probed == 1 and calls == ["1.jpg"] and Path(reduced).is_file()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60_000)  # another pixel limit: every outcome may differ
    assert catalog.ingest(data, clean_db).probed == 2


def test_probe_pool_only_for_images_worth_a_thread(tmp_path, monkeypatch):
    """Thumbnails are probed on one thread (a second only fights for the GIL); real-sized files
    get the configured pool. The choice follows the median size of the files to probe."""
    small, big = FileStat(size=1_000, mtime_ns=0), FileStat(size=400_000, mtime_ns=0)
    assert planning._probe_workers(4, [small] * 9 + [big]) == 1
    assert planning._probe_workers(4, [big] * 6 + [small] * 4) == 4
    assert planning._probe_workers(4, [None, None]) == 4  # nothing known: the configured pool
    assert planning._probe_workers(4, []) == 4

    seen = []
    monkeypatch.setattr(planning, "probe_all", lambda paths, workers, copies: seen.append(workers) or
                        [catalog.ImageProbe(width=8, height=8, mode="RGB", reason="", detail="", reduced_path=None)
                         for _ in paths])
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    rows = ["artist,new_filename"]
    for i in range(3):
        (data / "train" / f"{i}.jpg").write_bytes(b"\xff" * 20_000)  # sized like a 320 px JPEG
        rows.append(f"A,{i}.jpg")
    (data / "all_data_info.csv").write_text("\n".join(rows) + "\n")
    catalog.plan_ingest(data, workers=3)
    (data / "train" / "0.jpg").write_bytes(b"\xff" * 500)
    (data / "train" / "1.jpg").write_bytes(b"\xff" * 500)
    catalog.plan_ingest(data, workers=3)
    assert seen == [3, 1]
