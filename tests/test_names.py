"""One name per artist, one name per file: Unicode forms, spacing and case of artists, styles and
genres, the deployment's aliases file, and CSV file names in another normal form than the disk's."""

import csv
import json
import unicodedata

import psycopg
import pytest

from painting_ml.core.errors import ConfigError
from painting_ml.core.settings import reload_settings
from painting_ml.data import ingest as catalog
from painting_ml.data import names
from painting_ml.data.synth import generate
from painting_ml.data.validation import measure_drift

pytestmark = pytest.mark.db

NFC = unicodedata.normalize("NFC", "Paul Cézanne")
NFD = unicodedata.normalize("NFD", "Paul Cézanne")


def _rows(data):
    with open(data / "all_data_info.csv", newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if (data / "train" / r["new_filename"]).is_file()
                or (data / "test" / r["new_filename"]).is_file()]


def _write(data, rows):
    with open(data / "all_data_info.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture
def small(tmp_path):
    """Three artists' paintings (16 CSV rows, 15 files), every row pointing at a file."""
    data = tmp_path / "data"
    generate(data, artists=3, per_artist=4, size=32, seed=1, test_only_artists=0, broken=0)
    rows = _rows(data)
    _write(data, rows)
    return data, rows


def _artists(url, root):
    with psycopg.connect(url) as conn:
        return dict(conn.execute(
            "SELECT filename, artist FROM paintings WHERE data_root = %s AND gone_at IS NULL",
            (str(root.resolve()),)).fetchall())


@pytest.fixture
def aliases_env(monkeypatch, tmp_path):
    """Point PAINTING_ARTIST_ALIASES at a file written from a mapping (or raw bytes)."""
    def use(content, name="aliases.json"):
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(json.dumps(content) if name.endswith(".json") else content, encoding="utf-8")
        monkeypatch.setenv("PAINTING_ARTIST_ALIASES", str(path))
        reload_settings()
        return path

    yield use
    monkeypatch.delenv("PAINTING_ARTIST_ALIASES", raising=False)
    reload_settings()


@pytest.mark.parametrize("spellings, canonical", [
    ([NFC, NFD, NFD + " ", "paul cézanne", "Paul  Cézanne"], NFC),  # NFD counts for its NFC form
    (["vincent van gogh", "vincent van gogh", "Vincent van Gogh"], "vincent van gogh"),  # the most frequent
    (["Ann Good", "ANN GOOD"], "ANN GOOD"),  # a tie: the first in code-point order
])
def test_variants_are_one_name(spellings, canonical):
    assert set(names.canonical_names(spellings).values()) == {canonical}


def test_variants_are_one_artist_in_the_catalog(clean_db, small):
    data, rows = small
    painter = rows[0]["artist"]
    mine = [r for r in rows if r["artist"] == painter]
    for row, spelling in zip(mine, (NFC, NFD, NFD + "  ", "paul  CÉZANNE", NFC), strict=False):
        row["artist"] = spelling
    mine[0]["style"], mine[1]["style"] = " impressionism ", "Impressionism"
    _write(data, rows)
    summary = catalog.ingest(data, clean_db)
    assert summary.rejected == 0
    artists = _artists(clean_db, data)
    assert {artists[r["new_filename"]] for r in mine} == {NFC}
    assert len(set(artists.values())) == 3
    with psycopg.connect(clean_db) as conn:
        spellings = conn.execute("SELECT spelling, paintings, artist_paintings FROM artist_spellings "
                                 "WHERE artist = %s ORDER BY spelling", (NFC,)).fetchall()
        styles = dict(conn.execute("SELECT filename, style FROM paintings").fetchall())
    assert {s for s, _, _ in spellings} == {NFC, NFD, "paul  CÉZANNE"}  # as written, the artist trimmed
    assert {t for _, _, t in spellings} == {len(mine)}
    assert styles[mine[0]["new_filename"]] == styles[mine[1]["new_filename"]] == "Impressionism"
    # The row hashes are of the rows as written: a second ingest finds nothing changed.
    again = catalog.ingest(data, clean_db)
    assert (again.changed_rows, again.probed) == (0, 0)
    assert _artists(clean_db, data) == artists


def test_an_nfd_file_name_finds_its_nfc_file(clean_db, small):
    data, rows = small
    row = rows[0]
    old = _file_of(data, row)
    on_disk = old.with_name(unicodedata.normalize("NFC", "Cézanne_Étude.jpg"))
    old.rename(on_disk)
    row["new_filename"] = unicodedata.normalize("NFD", on_disk.name)
    _write(data, rows)
    summary = catalog.ingest(data, clean_db)
    assert summary.rejected == 0
    with psycopg.connect(clean_db) as conn:
        filename, rel_path = conn.execute("SELECT filename, rel_path FROM paintings WHERE filename LIKE %s",
                                          ("%tude.jpg",)).fetchone()
    assert filename == on_disk.name and rel_path.endswith(on_disk.name)


def _file_of(data, row):
    return next(p for p in (data / "train" / row["new_filename"], data / "test" / row["new_filename"]) if p.exists())


def test_a_name_in_both_forms_is_one_file_named_twice(clean_db, small):
    data, rows = small
    old = _file_of(data, rows[0])
    old.rename(old.with_name(NFC + ".jpg"))
    rows[0]["new_filename"] = NFC + ".jpg"
    rows.append({**rows[0], "new_filename": NFD + ".jpg"})
    _write(data, rows)
    catalog.ingest(data, clean_db)
    with psycopg.connect(clean_db) as conn:
        reasons = [r[0] for r in conn.execute("SELECT reason FROM rejects")]
    assert reasons == ["duplicate_row"]


def test_the_aliases_file_merges_spellings(clean_db, small, aliases_env):
    data, rows = small
    first, second = rows[0]["artist"], next(r["artist"] for r in rows if r["artist"] != rows[0]["artist"])
    for r in rows:
        if r["artist"] == first:
            r["artist"] = "Rembrandt van Rijn"
        elif r["artist"] == second:
            r["artist"] = "rembrandt "
    _write(data, rows)
    aliases_env("Rembrandt:\n  - Rembrandt van Rijn\n  - Rembrandt Harmenszoon van Rijn\n", "aliases.yaml")
    catalog.ingest(data, clean_db)
    artists = _artists(clean_db, data)
    assert len(set(artists.values())) == 2 and "Rembrandt" in artists.values()
    with psycopg.connect(clean_db) as conn:
        spellings = {r[0] for r in conn.execute("SELECT spelling FROM artist_spellings WHERE artist = 'Rembrandt'")}
    assert spellings == {"Rembrandt van Rijn", "rembrandt"}


@pytest.mark.parametrize("name, content, message", [
    ("missing.json", None, "no such file"),
    ("folder.json", "dir", "is a folder"),
    ("latin1.yaml", "Zoë: [Zoe]\n".encode("latin-1"), "is not UTF-8"),
    ("list.json", ["Rembrandt"], "holds a list"),
    ("bad.yaml", "a: [b\n", "not valid YAML"),
    ("nested.json", {"Rembrandt": {"x": 1}}, "must be a name mapped to a list of names"),
    ("aliases.txt", "x", "name the file"),
    ("two.json", {"Rembrandt": ["Rembrandt van Rijn"], "Rembrandt Harmenszoon": [" rembrandt VAN rijn"]},
     "is a spelling of both 'Rembrandt' and 'Rembrandt Harmenszoon'"),
])
def test_a_bad_aliases_file_is_one_line_at_ingest(clean_db, small, aliases_env, tmp_path, name, content, message):
    if content == "dir":
        (tmp_path / name).mkdir()
        content = None
    aliases_env(content, name)
    with pytest.raises(ConfigError) as err:
        catalog.ingest(small[0], clean_db)
    text = str(err.value)
    assert message in text and "PAINTING_ARTIST_ALIASES=" in text and "\n" not in text
    assert _artists(clean_db, small[0]) == {}


def test_renaming_an_artist_in_the_csv_moves_its_paintings(clean_db, small):
    data, rows = small
    painter = rows[0]["artist"]
    mine = {r["new_filename"] for r in rows if r["artist"] == painter}
    catalog.ingest(data, clean_db)
    before = _artists(clean_db, data)
    for r in rows:
        if r["artist"] == painter:
            r["artist"] = "Renamed Painter"
    _write(data, rows)
    assert catalog.ingest_if_changed(data, clean_db) is not None
    after = _artists(clean_db, data)
    assert {after[f] for f in mine} == {"Renamed Painter"}
    assert {f: a for f, a in after.items() if f not in mine} == {f: a for f, a in before.items() if f not in mine}
    # The data-quality gate's drift check sees the old name removed and the new one added.
    totals = [{"artist_totals": _totals(a), "image_side": {}} for a in (before, after)]
    drift = measure_drift(totals[1], totals[0])
    assert (drift["artists_added"], drift["artists_removed"]) == (["Renamed Painter"], [painter])


def _totals(artists):
    out = {}
    for a in artists.values():
        out[a] = out.get(a, 0) + 1
    return out


def test_a_changed_majority_renames_unchanged_rows_too(clean_db, small):
    data, rows = small
    painter = rows[0]["artist"]
    mine = [r for r in rows if r["artist"] == painter]
    assert len(mine) >= 4
    upper = painter.upper()
    mine[0]["artist"] = upper
    _write(data, rows)
    catalog.ingest(data, clean_db)
    assert {_artists(clean_db, data)[r["new_filename"]] for r in mine} == {painter}
    mine[1]["artist"] = mine[2]["artist"] = upper  # now the upper-case spelling is the most frequent
    _write(data, rows)
    summary = catalog.ingest(data, clean_db)
    assert summary.changed_rows == 2
    assert {_artists(clean_db, data)[r["new_filename"]] for r in mine} == {upper}
