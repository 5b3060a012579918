"""The curators' review loop: verdicts, undo, conflicts, orphans, and label overrides flowing into
the next dataset version (painting_ml.results.reviews, sql/datasets.sql, the review CLI)."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg.types.json import Jsonb

from painting_ml.core.config import RunConfig
from painting_ml.data import ingest as catalog
from painting_ml.data.ingest import resolve_root
from painting_ml.data.selection import select_artists, usable_counts
from painting_ml.data.versions import create_dataset_version, load_items
from painting_ml.results import reviews
from painting_ml.results.reviews import ReviewConflict, ReviewError

pytestmark = pytest.mark.db


def flag_paintings(url: str, data_dir, n: int = 4) -> dict:
    """Ingest ``data_dir``, make a dataset version and a ranked audit of it that flags ``n``
    paintings (each suggested the next artist), as the audit would; return what was flagged."""
    catalog.ingest(data_dir, url)
    cfg = RunConfig(data_dir=str(data_dir), n_artists=3, seed=1)
    version = create_dataset_version(cfg, select_artists(cfg, url), url)
    artists, items = load_items(version, url)
    root = resolve_root(data_dir)
    flagged = [i for i in items if i.split != "unseen"][:: max(1, len(items) // (n + 1))][:n]
    with psycopg.connect(url) as conn:
        audit = conn.execute(
            "INSERT INTO audits (audit_key, dataset_version_id, data_root, folds, recipe, config, status) "
            "VALUES ('test:audit', %s, %s, 5, 'head', '{}', 'ranked') RETURNING id", (version, root)).fetchone()[0]
        for rank, item in enumerate(flagged, 1):
            suggested = artists[(artists.index(item.artist) + 1) % len(artists)]
            conn.execute(
                "INSERT INTO label_issues (audit_id, data_root, filename, catalog_artist, suggested_artist, quality, "
                "is_issue, rank, evidence) VALUES (%s, %s, %s, %s, %s, %s, true, %s, %s)",
                (audit, root, item.filename, item.artist, suggested, 0.01 * rank, rank,
                 Jsonb({"heatmaps": [f"audits/{audit}/evidence/{item.filename}.png"]})))
    return {"root": root, "audit": audit, "version": version, "cfg": cfg, "artists": artists,
            "files": [i.filename for i in flagged], "artist_of": {i.filename: i.artist for i in flagged},
            "suggested_of": {i.filename: artists[(artists.index(i.artist) + 1) % len(artists)] for i in flagged}}


@pytest.fixture
def flagged(clean_db, tiny_data):
    return {**flag_paintings(clean_db, tiny_data), "url": clean_db}


def test_keep_relabel_unsure_and_the_queue(flagged):
    url, root, (a, b, c, d) = flagged["url"], flagged["root"], flagged["files"]
    queue = reviews.queue(url=url)
    assert [q["filename"] for q in queue] == [a, b, c, d] and [q["rank"] for q in queue] == [1, 2, 3, 4]
    assert queue[0]["evidence"] == {"heatmaps": [f"audits/{flagged['audit']}/evidence/{a}.png"]}
    assert not any(q["orphaned"] or q["review_id"] for q in queue)

    kept = reviews.review(root, a, "keep", "alice", note="signed, provenance checked", url=url)
    assert kept["decision"] == "keep" and kept["new_artist"] is None and kept["audit_id"] == flagged["audit"]
    assert kept["catalog_artist"] == flagged["artist_of"][a] and kept["sha256"]
    moved = reviews.review(root, b, "relabel", "bob", new_artist=flagged["suggested_of"][b], url=url)
    assert moved["new_artist"] == flagged["suggested_of"][b]
    doubt = reviews.review(root, c, "unsure", "carol", url=url)
    queue = {q["filename"]: q for q in reviews.queue(url=url)}
    # A keep or relabel settles a painting; unsure leaves it in the queue with its verdict shown.
    assert set(queue) == {c, d} and queue[c]["last_decision"] == "unsure" and queue[c]["review_id"] == doubt["id"]
    assert reviews.queue(limit=1, url=url)[0]["filename"] == c
    assert reviews.queue(data_root="/elsewhere", url=url) == []

    undone = reviews.undo(kept["id"], "dave", url=url)
    assert undone["undone_by"] == "dave" and undone["undone_at"] is not None
    assert a in {q["filename"] for q in reviews.queue(url=url)}  # back in the queue
    with pytest.raises(ReviewError, match="undone already, by dave"):
        reviews.undo(kept["id"], "erin", url=url)
    with pytest.raises(ReviewError, match="no review 999"):
        reviews.undo(999, "erin", url=url)
    assert [h["id"] for h in reviews.history(root, a, url=url)] == [kept["id"]]  # the row stays


def test_relabel_is_refused_outside_the_catalog_or_to_the_same_artist(flagged):
    url, root, a = flagged["url"], flagged["root"], flagged["files"][0]
    with pytest.raises(ReviewError, match=r"cannot relabel .* to 'Nobody Known': no painting .* by that artist"):
        reviews.review(root, a, "relabel", "alice", new_artist="Nobody Known", url=url)
    near = flagged["suggested_of"][a][:-1]
    with pytest.raises(ReviewError, match="did you mean"):
        reviews.review(root, a, "relabel", "alice", new_artist=near, url=url)
    with pytest.raises(ReviewError, match="already by .* use keep"):
        reviews.review(root, a, "relabel", "alice", new_artist=flagged["artist_of"][a], url=url)
    for bad in [dict(decision="delete"), dict(decision="relabel"), dict(decision="keep", new_artist="X"),
                dict(decision="keep", reviewer=" ")]:
        with pytest.raises(ReviewError):
            reviews.review(root, a, **{"reviewer": "alice", **bad}, url=url)
    with pytest.raises(ReviewError, match="no painting 'missing.jpg'"):
        reviews.review(root, "missing.jpg", "keep", "alice", url=url)
    # The catalog's spelling is matched case- and space-insensitively, and stored canonical.
    loose = "  " + flagged["suggested_of"][a].upper() + " "
    row = reviews.review(root, a, "relabel", "alice", new_artist=loose, url=url)
    assert row["new_artist"] == flagged["suggested_of"][a]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM label_reviews").fetchone()[0] == 1


def test_a_verdict_the_reviewer_did_not_see_is_never_overwritten(flagged):
    url, root, a = flagged["url"], flagged["root"], flagged["files"][0]
    first = reviews.review(root, a, "keep", "alice", url=url)
    with pytest.raises(ReviewConflict, match=f"decided meanwhile — review {first['id']}: keep by alice at") as exc:
        reviews.review(root, a, "relabel", "bob", new_artist=flagged["suggested_of"][a], url=url)
    assert exc.value.standing["id"] == first["id"]
    second = reviews.review(root, a, "relabel", "bob", new_artist=flagged["suggested_of"][a],
                            seen_review_id=first["id"], url=url)
    with pytest.raises(ReviewConflict, match=f"review {second['id']}: relabel to"):
        reviews.review(root, a, "keep", "alice", seen_review_id=first["id"], url=url)
    reviews.undo(second["id"], "bob", url=url)
    with pytest.raises(ReviewConflict, match=f"review {first['id']}: keep by alice"):
        reviews.review(root, a, "keep", "carol", seen_review_id=second["id"], url=url)
    assert reviews.standing_review(root, a, url=url)["id"] == first["id"]  # the earlier verdict stands again
    b = flagged["files"][1]
    only = reviews.review(root, b, "unsure", "alice", url=url)
    reviews.undo(only["id"], "alice", url=url)
    with pytest.raises(ReviewConflict, match=f"review {only['id']}\\) was undone meanwhile"):
        reviews.review(root, b, "keep", "carol", seen_review_id=only["id"], url=url)


def test_two_curators_at_once_the_second_sees_the_first(flagged):
    """The painting is locked while a verdict is written: the second waits, then sees the first."""
    url, root, a = flagged["url"], flagged["root"], flagged["files"][0]
    from painting_ml.core import db, locks

    outcome: dict = {}
    with psycopg.connect(url) as first:
        first.execute(db.sql("reviews", "lock_painting"), {"root": root, "filename": a, "lock": locks.REVIEW})

        def second():
            try:
                outcome["row"] = reviews.review(root, a, "keep", "bob", url=url)
            except ReviewConflict as exc:
                outcome["conflict"] = str(exc)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the lock
        first.execute("INSERT INTO label_reviews (data_root, filename, decision, catalog_artist, new_artist, reviewer, "
                      "sha256) SELECT data_root, filename, 'relabel', artist, %s, 'alice', sha256 FROM paintings "
                      "WHERE data_root = %s AND filename = %s", (flagged["suggested_of"][a], root, a))
    thread.join(10)
    assert "row" not in outcome and "relabel to" in outcome["conflict"] and "by alice" in outcome["conflict"]


def test_a_painting_that_left_the_folder_keeps_its_verdict_shown_orphaned(flagged):
    url, root, (a, b) = flagged["url"], flagged["root"], flagged["files"][:2]
    kept = reviews.review(root, a, "unsure", "alice", url=url)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE paintings SET gone_at = now() WHERE data_root = %s AND filename = ANY(%s)",
                     (root, [a, b]))
    queue = {q["filename"]: q for q in reviews.queue(url=url)}
    assert queue[a]["orphaned"] and queue[b]["orphaned"] and not queue[flagged["files"][2]]["orphaned"]
    standing = reviews.standing_review(root, a, url=url)
    assert standing["id"] == kept["id"] and standing["orphaned"] and not standing["current"]


def test_overrides_flow_into_the_next_dataset_version_and_a_changed_file_reopens(flagged):
    url, root, cfg = flagged["url"], flagged["root"], flagged["cfg"]
    a, b = flagged["files"][:2]
    before = usable_counts(cfg.data_dir, url)
    relabel = reviews.review(root, a, "relabel", "bob", new_artist=flagged["suggested_of"][a], note="<b>x</b>",
                             url=url)
    reviews.review(root, b, "keep", "alice", url=url)
    after = usable_counts(cfg.data_dir, url)
    assert after[flagged["artist_of"][a]] == before[flagged["artist_of"][a]] - 1
    assert after[flagged["suggested_of"][a]] == before[flagged["suggested_of"][a]] + 1
    # A new version (its (file, artist, split) changed) that says how many overrides it applied.
    version = create_dataset_version(cfg, select_artists(cfg, url), url)
    assert version != flagged["version"]
    _, items = load_items(version, url)
    assert {i.filename: i.artist for i in items}.get(a, flagged["suggested_of"][a]) == flagged["suggested_of"][a]
    with psycopg.connect(url) as conn:
        counts = dict(conn.execute("SELECT id, overrides_applied FROM dataset_versions").fetchall())
        csv_artist = conn.execute("SELECT artist FROM paintings WHERE data_root = %s AND filename = %s",
                                  (root, a)).fetchone()[0]
    assert counts[flagged["version"]] == 0 and counts[version] == 1 and any(i.filename == a for i in items)
    assert csv_artist == flagged["artist_of"][a]  # the CSV stays the source of record
    from painting_ml.results.queries import run_query

    columns, rows = run_query("label_overrides", {}, url=url)
    (row,) = [dict(zip(columns, r, strict=True)) for r in rows]
    assert (row["filename"], row["csv_artist"], row["curator_artist"], row["reviewer"], row["note"]) == \
        (a, flagged["artist_of"][a], flagged["suggested_of"][a], "bob", "<b>x</b>")

    # The file changes: both verdicts lose force, the override is gone and both are back in the queue.
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE paintings SET sha256 = 'changed' WHERE data_root = %s AND filename = ANY(%s)",
                     (root, [a, b]))
    assert usable_counts(cfg.data_dir, url) == before
    assert {a, b} <= {q["filename"] for q in reviews.queue(url=url)}
    assert reviews.standing_review(root, a, url=url)["id"] == relabel["id"]  # kept, no longer current
    reviews.undo(relabel["id"], "bob", url=url)
    assert create_dataset_version(cfg, select_artists(cfg, url), url) == flagged["version"]


def test_the_review_command(flagged, capsys, monkeypatch):
    from painting_ml.cli import main
    from tests.conftest import using_database

    root, (a, b) = flagged["root"], flagged["files"][:2]
    monkeypatch.setenv("USER", "cli-user")
    with using_database(flagged["url"]):
        assert main(["review", "list", "--json"]) == 0
        assert a in capsys.readouterr().out
        assert main(["review", "keep", a, "--data-dir", root, "--note", "fine"]) == 0
        out = capsys.readouterr().out
        assert f"{a}: recorded review 1: keep by cli-user" in out and "--undo 1" in out
        assert main(["review", "--reviewer", "zed", "relabel", a, flagged["suggested_of"][a], "--data-dir", root]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "keep by cli-user" in err and "pass --replace 1" in err
        assert main(["review", "relabel", a, flagged["suggested_of"][a], "--data-dir", root, "--replace", "1",
                     "--reviewer", "zed"]) == 0
        assert "relabel to" in capsys.readouterr().out
        assert main(["review", "relabel", b, "Nobody", "--data-dir", root]) == 2
        assert "relabel to an artist of the catalog" in capsys.readouterr().err
        assert main(["review", "--undo", "2", "--json"]) == 0
        assert '"undone_by": "cli-user"' in capsys.readouterr().out
        assert main(["review", "history", a, "--data-dir", root]) == 0
        assert "(2 rows)" in capsys.readouterr().out
        assert main(["review"]) == 2 and "name an action" in capsys.readouterr().err
        assert main(["review", "--undo", "0"]) == 2 and "review id" in capsys.readouterr().err


@pytest.mark.unit
def test_the_report_says_how_many_overrides_its_version_applied():
    import datetime

    from painting_ml.results.report import _page

    now = datetime.datetime(2026, 12, 4, tzinfo=datetime.UTC)
    run = {"id": 1, "run_key": "k", "status": "evaluated", "started_at": now, "finished_at": now, "version_id": 3,
           "content_hash": "ab" * 32, "version_created_at": now, "config": {}, "summary": {}, "artist_counts": {},
           "test_accuracy": 0.5, "top3_accuracy": 0.9, "macro_f1": 0.5, "open_set_auroc": None}
    assert "No label overrides applied" in _page(run, [], [], [], [], [], [], None, (), 0)
    assert "2 label overrides applied" in _page(run, [], [], [], [], [], [], None, (), 2)
    assert "1 label override applied" in _page(run, [], [], [], [], [], [], None, (), 1)


def test_a_file_name_is_matched_in_nfc_and_a_wrong_one_gets_a_hint(flagged):
    import unicodedata

    url, root, a = flagged["url"], flagged["root"], flagged["files"][0]
    nfc = unicodedata.normalize("NFC", "café " + a)
    with psycopg.connect(url) as conn:  # a copy of a under a name with an accent, keyed NFC as ingest keys it
        conn.execute("INSERT INTO paintings SELECT (jsonb_populate_record(NULL::paintings, "
                     "to_jsonb(p) || jsonb_build_object('filename', %s::text))).* FROM paintings p "
                     "WHERE data_root = %s AND filename = %s", (nfc, root, a))
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    row = reviews.review(root, nfd, "keep", "alice", url=url)
    assert row["filename"] == nfc
    assert [h["id"] for h in reviews.history(root, nfd, url=url)] == [row["id"]]
    assert reviews.standing_review(root, nfd, url=url)["id"] == row["id"]

    b = flagged["files"][1]
    with pytest.raises(ReviewError, match=rf"no painting ' {b}' .* \(did you mean '{b}'"):
        reviews.review(root, f" {b}", "keep", "alice", url=url)
    with pytest.raises(ReviewError, match=f"no painting '{b}' in the catalog of /elsewhere; it is in the catalog "
                                          f"of {root}: pass --data-dir {root}"):
        reviews.review("/elsewhere", b, "keep", "alice", url=url)
    with pytest.raises(ReviewError, match="no painting 'typo.jpg'"):
        reviews.history(root, "typo.jpg", url=url)
    assert reviews.history(root, b, url=url) == []  # a catalog painting with no verdict yet


def test_a_painting_whose_file_left_is_not_judged_until_it_is_back(flagged):
    url, root, a = flagged["url"], flagged["root"], flagged["files"][0]
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE paintings SET gone_at = now() WHERE data_root = %s AND filename = %s", (root, a))
    for decision, artist in (("keep", None), ("relabel", flagged["suggested_of"][a]), ("unsure", None)):
        with pytest.raises(ReviewError, match=f"{a} left {root} .* put the file back and ingest again"):
            reviews.review(root, a, decision, "alice", new_artist=artist, url=url)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE paintings SET gone_at = NULL WHERE data_root = %s AND filename = %s", (root, a))
    assert reviews.review(root, a, "keep", "alice", url=url)["decision"] == "keep"


def test_a_seen_review_of_another_painting_or_none_is_named_as_such(flagged):
    url, root, (a, b) = flagged["url"], flagged["root"], flagged["files"][:2]
    on_a = reviews.review(root, a, "keep", "alice", url=url)
    with pytest.raises(ReviewError, match=f"review {on_a['id']} is a verdict on {a} of {root}, not on {b}; "
                                          f"{b} has no standing verdict: decide without naming one") as exc:
        reviews.review(root, b, "keep", "bob", seen_review_id=on_a["id"], url=url)
    assert not isinstance(exc.value, ReviewConflict)
    with pytest.raises(ReviewError, match=f"review 999 does not exist; the one standing on {a} is "
                                          f"review {on_a['id']}: keep by alice"):
        reviews.review(root, a, "unsure", "bob", seen_review_id=999, url=url)


def test_did_you_mean_ignores_case_and_accents(flagged):
    url, root, a = flagged["url"], flagged["root"], flagged["files"][0]
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE paintings SET artist = 'Zoë Kovač' WHERE data_root = %s AND filename = %s",
                     (root, flagged["files"][1]))
    with pytest.raises(ReviewError, match=r"to 'zoe kovac': .* \(did you mean 'Zoë Kovač'\?\)"):
        reviews.review(root, a, "relabel", "alice", new_artist="zoe kovac", url=url)


def test_the_review_command_says_what_stands_after_an_undo(flagged, capsys, monkeypatch):
    from painting_ml.cli import main
    from tests.conftest import using_database

    root, a = flagged["root"], flagged["files"][0]
    monkeypatch.setenv("USER", "cli-user")
    with using_database(flagged["url"]):
        assert main(["review", "unsure", a, "--data-dir", root]) == 0
        assert main(["review", "keep", a, "--data-dir", root, "--replace", "1"]) == 0
        capsys.readouterr()
        assert main(["review", "--undo", "2"]) == 0
        out = capsys.readouterr().out.strip()
        assert out.startswith(f"{a}: undid review 2: keep by cli-user") and "--undo" not in out
        assert "; standing now: review 1: unsure by cli-user" in out
        assert main(["review", "--undo", "1"]) == 0
        assert capsys.readouterr().out.strip().endswith("no verdict stands now")
        assert main(["review", "--undo", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "review 1 was undone already, by cli-user" in err
        assert main(["review", "keep", a]) == 2  # the configured data folder is not the painting's
        assert f"pass --data-dir {root}" in capsys.readouterr().err
        assert main(["review", "list", "--data-dir", "/elsewhere"]) == 0
        captured = capsys.readouterr()
        assert "(0 rows)" in captured.out and "nothing awaits a verdict" in captured.err
        assert main(["review", "list", "--data-dir", "/elsewhere", "--json"]) == 0
        assert capsys.readouterr().out.strip() == "[]"


@pytest.mark.parametrize("name", ["mallory\nroot", "a\tb", "x" * 201, "  "])
def test_a_reviewer_name_that_is_not_a_name_is_refused(flagged, name):
    url, root, a = flagged["url"], flagged["root"], flagged["files"][0]
    with pytest.raises(ReviewError, match="reviewer name"):
        reviews.review(root, a, "unsure", name, url=url)
    row = reviews.review(root, a, "unsure", " alice ", url=url)
    assert row["reviewer"] == "alice"
    with pytest.raises(ReviewError, match="reviewer name"):
        reviews.undo(row["id"], name, url=url)


def test_a_relabel_may_use_any_spelling_the_csv_wrote(flagged):
    url, root, a = flagged["url"], flagged["root"], flagged["files"][0]
    target = flagged["suggested_of"][a]
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO name_spellings (data_root, kind, spelling, canonical, paintings) "
                     "VALUES (%s, 'artist', 'The Other Hand', %s, 1)", (root, target))
    row = reviews.review(root, a, "relabel", "alice", new_artist="the other  HAND", url=url)
    assert row["new_artist"] == target
