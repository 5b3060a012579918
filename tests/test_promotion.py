"""The promotion gate: pure rules, and decisions stored with the champion pointer."""

import json
import threading

import psycopg
import pytest
from conftest import champion_of

from painting_ml.results.comparison import pick_best
from painting_ml.results.promotion import Scores, decide, promote

pytestmark = pytest.mark.db


def test_first_model_becomes_champion():
    ok, reasons = decide(Scores(0.4, {"a": 0.5}), None, 5)
    assert ok and "no champion yet" in reasons[0]


def test_better_f1_and_no_big_recall_drop_is_promoted():
    ok, reasons = decide(Scores(0.80, {"a": 0.9, "b": 0.71}), Scores(0.78, {"a": 0.9, "b": 0.75}), 5)
    assert ok and reasons == ["macro-F1 0.800 >= champion's 0.780", "no artist's recall fell more than 5 points"]


def test_lower_f1_is_refused():
    ok, reasons = decide(Scores(0.70, {"a": 0.9}), Scores(0.78, {"a": 0.9}), 5)
    assert not ok and reasons[0] == "macro-F1 0.700 < champion's 0.780"


def test_one_artist_dropping_too_far_is_refused_even_with_better_f1():
    ok, reasons = decide(Scores(0.90, {"a": 1.0, "b": 0.60}), Scores(0.80, {"a": 0.7, "b": 0.72}), 10)
    assert not ok
    assert reasons[1] == "recall of b fell 12.0 points (0.720 -> 0.600), more than the 10 allowed"
    assert decide(Scores(0.90, {"b": 0.62}), Scores(0.80, {"b": 0.72}), 10)[0]  # exactly 10 points: allowed


def test_the_floor_refuses_a_candidate_before_anything_else():
    ok, reasons = decide(Scores(0.25, {"a": 0.5}), None, 5, min_macro_f1=0.3)
    assert not ok and reasons == ["macro-F1 0.250 is under the floor min_macro_f1 = 0.300: never promoted, "
                                  "with or without a champion"]
    ok, reasons = decide(Scores(0.25, {"a": 0.9}), Scores(0.10, {"a": 0.1}), 5, min_macro_f1=0.3)
    assert not ok and len(reasons) == 1  # better than the champion does not matter under the floor
    assert decide(Scores(0.30, {}), None, 5, min_macro_f1=0.3)[0]  # exactly at the floor: allowed


def test_pick_best_by_val_accuracy_then_loss():
    runs = [{"run_id": 1, "best_val_accuracy": 0.8, "best_val_loss": 0.5},
            {"run_id": 2, "best_val_accuracy": 0.9, "best_val_loss": 0.7},
            {"run_id": 3, "best_val_accuracy": 0.9, "best_val_loss": 0.6}]
    assert pick_best(runs)["run_id"] == 3


def _add_run(conn, run_id, version, f1, recalls):
    conn.execute("INSERT INTO runs (id, run_key, dataset_version_id, config, status, run_dir, macro_f1) "
                 "VALUES (%s, %s, %s, '{}', 'evaluated', '/r', %s)", (run_id, f"k{run_id}", version, f1))
    for artist, r in recalls.items():
        conn.execute("INSERT INTO class_metrics VALUES (%s, 'artist', %s, 0.5, %s, 0.5, 5, %s)", (run_id, artist, r, r))


@pytest.fixture
def versions(clean_db):
    with psycopg.connect(clean_db) as conn:
        conn.execute("INSERT INTO dataset_versions (id, content_hash, config, artists, artist_counts) VALUES "
                     "(1, 'h1', '{}', '[\"a\", \"b\"]', '{}'), (2, 'h2', '{}', '[\"c\", \"d\"]', '{}')")
    return clean_db


def test_promote_stores_decisions_and_moves_the_champion(versions):
    url = versions
    with psycopg.connect(url) as conn:
        _add_run(conn, 1, 1, 0.70, {"a": 0.7, "b": 0.7})
        _add_run(conn, 2, 1, 0.60, {"a": 0.6, "b": 0.6})
        _add_run(conn, 3, 1, 0.75, {"a": 0.8, "b": 0.7})
        _add_run(conn, 4, 2, 0.10, {"c": 0.1, "d": 0.1})
    assert promote(1, 5, url).promoted and champion_of(url) == 1
    d2 = promote(2, 5, url)
    assert not d2.promoted and d2.champion_run_id == 1 and d2.champion_f1 == pytest.approx(0.70)
    assert champion_of(url) == 1
    assert promote(3, 5, url).promoted and champion_of(url) == 3
    d4 = promote(4, 5, url)  # other artists: cannot be compared, and the Param is off: recorded, not promoted
    assert not d4.promoted and "artist set differs" in d4.reasons[0] and champion_of(url) == 3
    again = promote(2, 5, url)  # decided once; a retry returns the stored decision
    assert again.promoted is False and again.reasons == d2.reasons
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT run_id, promoted, reasons FROM promotions ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(1, True), (2, False), (3, True), (4, False)]
    assert json.dumps(rows[1][2]).count("macro-F1 0.600 < champion's 0.700") == 1


def _changes(url):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT run_id, previous_run_id, action, who FROM champion_changes ORDER BY id").fetchall()


def test_the_floor_blocks_even_the_first_candidate(versions):
    url = versions
    with psycopg.connect(url) as conn:
        _add_run(conn, 1, 1, 0.25, {"a": 0.3, "b": 0.2})
        _add_run(conn, 2, 1, 0.45, {"a": 0.5, "b": 0.4})
    d1 = promote(1, 5, url, min_macro_f1=0.3)
    assert not d1.promoted and d1.champion_run_id is None and champion_of(url) is None
    assert d1.reasons == ["macro-F1 0.250 is under the floor min_macro_f1 = 0.300: never promoted, "
                          "with or without a champion"]
    assert _changes(url) == []
    d2 = promote(2, 5, url, min_macro_f1=0.3)
    assert d2.promoted and d2.reasons == ["no champion yet: the first evaluated model becomes champion"]
    assert champion_of(url) == 2 and _changes(url) == [(2, None, "promote", "promotion gate")]


def test_a_changed_artist_set_is_promoted_only_with_the_param(versions):
    url = versions
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO dataset_versions (id, content_hash, config, artists, artist_counts) "
                     "VALUES (3, 'h3', '{}', '[\"e\", \"f\"]', '{}')")
        _add_run(conn, 1, 1, 0.70, {"a": 0.7, "b": 0.7})
        _add_run(conn, 2, 2, 0.90, {"c": 0.9, "d": 0.9})
        _add_run(conn, 3, 2, 0.95, {"c": 0.95, "d": 0.95})
        _add_run(conn, 4, 3, 0.20, {"e": 0.2, "f": 0.2})
    assert promote(1, 5, url, min_macro_f1=0.3).promoted
    d2 = promote(2, 5, url, min_macro_f1=0.3)  # better, but other artists and no Param: recorded, not promoted
    assert not d2.promoted and champion_of(url) == 1 and d2.champion_run_id == 1
    assert d2.reasons[0] == ("artist set differs from champion run 1's; they cannot be scored on the same "
                             "test paintings")
    assert "Param allow_artist_set_change is off" in d2.reasons[1]
    d3 = promote(3, 5, url, min_macro_f1=0.3, allow_artist_set_change=True)
    assert d3.promoted and champion_of(url) == 3
    assert "allow_artist_set_change is on" in d3.reasons[-1] and "0.950 clears the floor 0.300" in d3.reasons[-1]
    d4 = promote(4, 5, url, min_macro_f1=0.3, allow_artist_set_change=True)  # the floor comes first
    assert not d4.promoted and d4.reasons[0].startswith("macro-F1 0.200 is under the floor min_macro_f1 = 0.300")
    assert champion_of(url) == 3
    assert _changes(url) == [(1, None, "promote", "promotion gate"), (3, 1, "promote", "promotion gate")]


def test_concurrent_promotions_are_serialised(versions, monkeypatch):
    """Both gates gather their comparison (no champion yet) before either writes — a barrier
    makes the overlap certain. The loser must notice the new champion and compare against it."""
    from painting_ml.results import promotion

    url = versions
    with psycopg.connect(url) as conn:
        _add_run(conn, 1, 1, 0.70, {"a": 0.7, "b": 0.7})
        _add_run(conn, 2, 1, 0.70, {"a": 0.7, "b": 0.7})
    barrier = threading.Barrier(2, timeout=60)
    gathered = promotion._gather
    calls = []

    def overlapping_gather(run_id, url, min_macro_f1=0.0):
        out = gathered(run_id, url, min_macro_f1)
        calls.append((run_id, getattr(out, "champion_id", "decided")))
        if len(calls) <= 2:
            barrier.wait()  # both threads hold a "no champion" comparison at the same moment
        return out

    monkeypatch.setattr(promotion, "_gather", overlapping_gather)
    results = {}
    threads = [threading.Thread(target=lambda r=r: results.__setitem__(r, promote(r, 5, url))) for r in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # One of them went first and became champion with no baseline; the other was measured against it.
    first, second = sorted(results.values(), key=lambda d: d.champion_run_id is not None)
    assert first.champion_run_id is None and second.champion_run_id == first.run_id
    assert [c[1] for c in calls[:2]] == [None, None]  # the race really happened
    assert calls[2] == (second.run_id, first.run_id)  # and the loser re-gathered against the winner
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM champion").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM promotions").fetchone()[0] == 2


def test_promote_cli(versions, capsys):
    from painting_ml.cli import main

    with psycopg.connect(versions) as conn:
        _add_run(conn, 1, 1, 0.70, {"a": 0.7, "b": 0.7})
        _add_run(conn, 2, 1, 0.72, {"a": 0.5, "b": 0.9})
    assert main(["promote", "--run-id", "1"]) == 0
    assert "run 1: promoted to champion" in capsys.readouterr().out
    assert main(["promote", "--run-id", "2", "--max-recall-drop", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["promoted"] is False and any("recall of a fell 20.0 points" in r for r in out["reasons"])
    assert main(["promote", "--run-id", "99"]) == 2
    assert "run 99 does not exist" in capsys.readouterr().err
