"""The model registry: champion history, setting a champion by hand, rollback, the CLI, and the
migration that seeds the history of an existing database."""

import json
import shutil

import psycopg
import pytest
from conftest import champion_of

from painting_ml.core import db
from painting_ml.core.settings import get_settings
from painting_ml.results import promotion
from painting_ml.results.promotion import promote
from painting_ml.results.registry import RegistryError, champion_history, champion_info, rollback_champion, set_champion

pytestmark = pytest.mark.db


def _add_run(conn, run_id, f1, status="evaluated", version=1):
    conn.execute("INSERT INTO runs (id, run_key, dataset_version_id, config, status, run_dir, macro_f1) "
                 "VALUES (%s, %s, %s, '{}', %s, '/r', %s)", (run_id, f"k{run_id}", version, status, f1))
    for artist in ("a", "b") if f1 is not None else ():
        conn.execute("INSERT INTO class_metrics VALUES (%s, 'artist', %s, 0.5, %s, 0.5, 5, %s)",
                     (run_id, artist, f1, f1))


@pytest.fixture
def runs(clean_db):
    """Evaluated runs 1 (F1 0.60), 2 (0.50), 3 (0.70) and a run 4 still training, one dataset version."""
    with psycopg.connect(clean_db) as conn:
        conn.execute("INSERT INTO dataset_versions (id, content_hash, config, artists, artist_counts) "
                     "VALUES (1, 'h1', '{}', '[\"a\", \"b\"]', '{}')")
        for run_id, f1 in ((1, 0.60), (2, 0.50), (3, 0.70)):
            _add_run(conn, run_id, f1)
        _add_run(conn, 4, None, status="running")
    return clean_db


def _moves(url):
    return [(c.action, c.run_id, c.previous_run_id, c.who, c.why) for c in reversed(champion_history(url))]


def test_set_and_rollback_move_the_pointer_and_are_recorded_with_who_and_why(runs):
    url = runs
    assert promote(1, 5, url).promoted
    d3 = promote(3, 5, url)  # the gate: 3 beats 1
    assert d3.promoted
    change = set_champion(2, "alice", "run 3 misattributes the Rembrandt school", url)
    assert (change.run_id, change.previous_run_id, change.action) == (2, 3, "set") and champion_of(url) == 2
    back = rollback_champion("bob", "run 2 was a mistake", url)
    assert (back.run_id, back.previous_run_id, back.action) == (3, 2, "rollback") and champion_of(url) == 3
    # A second rollback walks further back (a rollback's own row is skipped): 3 was promoted over 1.
    assert rollback_champion("bob", "3 is no better", url).run_id == 1 and champion_of(url) == 1
    with pytest.raises(RegistryError, match="champion run 1 has no earlier champion in the history"):
        rollback_champion("bob", "again", url)
    assert champion_of(url) == 1  # the failed rollback changed nothing
    gate_why = "; ".join(d3.reasons)
    assert _moves(url) == [
        ("promote", 1, None, "promotion gate", "no champion yet: the first evaluated model becomes champion"),
        ("promote", 3, 1, "promotion gate", gate_why),
        ("set", 2, 3, "alice", "run 3 misattributes the Rembrandt school"),
        ("rollback", 3, 2, "bob", "run 2 was a mistake"),
        ("rollback", 1, 3, "bob", "3 is no better"),
    ]
    assert [(c.action, c.run_id) for c in champion_history(url, limit=2)] == [("rollback", 1), ("rollback", 3)]
    info = champion_info(url)
    assert info["run_id"] == 1 and info["how"] == "rollback" and info["macro_f1"] == pytest.approx(0.60)


def test_set_champion_refuses_what_cannot_be_champion(runs):
    url = runs
    with pytest.raises(RegistryError, match=r"^run 99 does not exist; `painting-ml runs` lists the runs$"):
        set_champion(99, "alice", "why not", url)
    with pytest.raises(RegistryError, match="run 4 is running, not evaluated"):
        set_champion(4, "alice", "why not", url)
    with pytest.raises(RegistryError, match="needs why"):
        set_champion(1, "alice", "   ", url)
    set_champion(1, "alice", "first", url)
    with pytest.raises(RegistryError, match="run 1 is already the champion"):
        set_champion(1, "alice", "again", url)
    assert _moves(url) == [("set", 1, None, "alice", "first")]


def test_rollback_with_no_champion_or_no_previous_one_is_a_clear_error(runs):
    url = runs
    with pytest.raises(RegistryError, match="there is no champion to roll back"):
        rollback_champion("bob", "undo", url)
    promote(1, 5, url)
    with pytest.raises(RegistryError, match="champion run 1 has no earlier champion"):
        rollback_champion("bob", "undo", url)


def test_the_gate_compares_against_a_champion_set_by_hand(runs):
    url = runs
    set_champion(3, "alice", "best so far", url)
    d1 = promote(1, 5, url)  # 0.60 < 0.70 of the hand-set champion
    assert not d1.promoted and d1.champion_run_id == 3 and champion_of(url) == 3
    # A run set by hand and then put through the gate is judged on the floor, and no move is recorded.
    d3 = promote(3, 5, url, min_macro_f1=0.3)
    assert d3.promoted and "already champion" in d3.reasons[0]
    assert _moves(url) == [("set", 3, None, "alice", "best so far")]


def test_a_hand_set_while_the_gate_compares_makes_the_gate_compare_again(runs, monkeypatch):
    url = runs
    promote(2, 5, url)  # champion 2 (F1 0.50)
    gathered, calls = promotion._gather, []

    def gather_then_someone_sets(run_id, url, min_macro_f1=0.0):
        out = gathered(run_id, url, min_macro_f1)
        calls.append(out.champion_id)
        if len(calls) == 1:
            set_champion(3, "alice", "meanwhile", url)  # lands between the gate's gather and its lock
        return out

    monkeypatch.setattr(promotion, "_gather", gather_then_someone_sets)
    d1 = promote(1, 5, url)
    assert calls == [2, 3] and d1.champion_run_id == 3 and not d1.promoted and champion_of(url) == 3


# --- the CLI ------------------------------------------------------------------------------------

def _one_line_error(capsys, *expected):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def test_champion_cli_shows_sets_and_rolls_back(runs, capsys, monkeypatch):
    from painting_ml.cli import main

    assert main(["champion"]) == 0
    assert capsys.readouterr().out.startswith("no champion yet")
    promote(1, 5, runs)
    monkeypatch.setattr("getpass.getuser", lambda: "carol")
    assert main(["champion", "--set", "3", "--why", "better on the new scans"]) == 0
    assert capsys.readouterr().out.strip() == ("run 3 is the champion now (was run 1); recorded as set by carol: "
                                               "better on the new scans")
    assert main(["champion"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("champion: run 3 (macro-F1 0.700, dataset version 1) since ") and "by set" in out
    assert "better on the new scans" in out and "(2 rows)" in out
    assert main(["rollback", "--why", "complaints", "--who", "dave", "--json"]) == 0
    change = json.loads(capsys.readouterr().out)
    assert (change["run_id"], change["previous_run_id"], change["action"], change["who"], change["why"]) == \
        (1, 3, "rollback", "dave", "complaints")
    assert main(["champion", "--json", "--limit", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["champion"]["run_id"] == 1 and [h["action"] for h in shown["history"]] == ["rollback"]
    assert champion_of(runs) == 1


@pytest.mark.parametrize("argv, expected", [
    (["champion", "--set", "999999", "--why", "x"], ["painting-ml champion: error:", "run 999999 does not exist"]),
    (["champion", "--set", "4", "--why", "x"], ["painting-ml champion: error:", "run 4 is running, not evaluated"]),
    (["champion", "--set", "1"], ["painting-ml champion: error:", "--set needs --why TEXT"]),
    (["champion", "--set", "1", "--why", " "], ["painting-ml champion: error:", "needs why"]),
    (["champion", "--why", "x"], ["painting-ml champion: error:", "--why and --who go with --set"]),
    (["champion", "--set", "0", "--why", "x"], ["painting-ml champion: error:", "a run id is 1 to"]),
    (["champion", "--set", "99999999999999999999", "--why", "x"], ["painting-ml champion: error:", "out of range"]),
    (["champion", "--set", "abc", "--why", "x"], ["painting-ml champion: error:", "not a whole number"]),
    (["rollback"], ["painting-ml rollback: error:", "required: --why"]),
    (["rollback", "--why", "undo"], ["painting-ml rollback: error:", "there is no champion to roll back"]),
])
def test_champion_cli_user_errors_are_one_line(runs, capsys, argv, expected):
    from painting_ml.cli import main

    assert main(argv) == 2
    _one_line_error(capsys, *expected)
    assert champion_of(runs) is None and champion_history(runs) == []


def test_without_a_login_name_the_cli_asks_for_who(runs, capsys, monkeypatch):
    from painting_ml.cli import main

    def no_user():
        raise KeyError("getpwuid(): uid not found: 1234")

    monkeypatch.setattr("getpass.getuser", no_user)
    assert main(["champion", "--set", "1", "--why", "x"]) == 2
    _one_line_error(capsys, "cannot tell who you are", "--who NAME")
    assert main(["champion", "--set", "1", "--why", "x", "--who", "erin"]) == 0
    assert _moves(runs) == [("set", 1, None, "erin", "x")]


# --- migration 0007 on a database that already had promotions ----------------------------------

@pytest.fixture
def old_db(server_url):
    url = db.create_database(server_url, "pm_registry")
    yield url
    db.drop_database(server_url, url)


def test_migration_seeds_the_history_from_past_promotions(old_db, tmp_path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(get_settings().sql_dir, sql_dir)
    (sql_dir / "migrations" / "0007_registry.sql").unlink()
    db.migrate(old_db, sql_dir=sql_dir)  # the schema as it was before the registry
    with psycopg.connect(old_db) as conn:
        conn.execute("INSERT INTO dataset_versions (id, content_hash, config, artists, artist_counts) "
                     "VALUES (1, 'h1', '{}', '[\"a\"]', '{}')")
        for run_id in (1, 2, 3, 4):
            conn.execute("INSERT INTO runs (id, run_key, dataset_version_id, config, status, run_dir) "
                         "VALUES (%s, %s, 1, '{}', 'evaluated', '/r')", (run_id, f"k{run_id}"))
        conn.execute("""INSERT INTO promotions (run_id, dataset_version_id, champion_run_id, promoted, reasons)
                        VALUES (1, 1, NULL, true, '["no champion yet"]'),
                               (2, 1, 1, false, '["worse"]'),
                               (3, 1, 1, true, '["better", "no drop"]')""")
        conn.execute("INSERT INTO champion (run_id) VALUES (4)")  # then someone pointed it at 4 in SQL
    shutil.copy(get_settings().sql_dir / "migrations" / "0007_registry.sql", sql_dir / "migrations")
    assert db.migrate(old_db, sql_dir=sql_dir)[0] == "0007_registry"
    assert [(c.action, c.run_id, c.previous_run_id, c.who, c.why) for c in reversed(champion_history(old_db))] == [
        ("promote", 1, None, "promotion gate", "no champion yet"),
        ("promote", 3, 1, "promotion gate", "better; no drop"),
        ("set", 4, 3, "migration 0007", "champion found without a recorded promotion"),
    ]
    assert rollback_champion("ops", "undo the SQL edit", old_db).run_id == 3
