"""Views and named queries over a database populated with known rows; the `sql` and `runs` CLI."""

import csv
import io
import json

import psycopg
import pytest

from painting_ml.cli import main
from painting_ml.core.errors import ConfigError
from painting_ml.results.queries import list_queries, parse_query, run_query

pytestmark = pytest.mark.db

EXPECTED = {
    "latest_metrics": ["artist", "precision", "recall", "f1", "support", "accuracy"],
    "compare_runs": ["run_id", "status", "backbone", "optimizer", "targets", "fine_tune", "image_size", "epochs_run",
                     "best_val_acc", "test_acc", "top3", "macro_f1", "open_set_auroc", "is_champion"],
    "confused_pairs": ["true_artist", "predicted_artist", "count", "share_of_true"],
    "champion_history": ["decision_id", "decided_at", "run_id", "promoted", "candidate_f1", "champion_run_id",
                         "champion_f1", "is_current_champion", "reasons"],
    "artist_history": ["run_id", "finished_at", "backbone", "optimizer", "f1", "accuracy", "support"],
    "optimizer_comparison": ["optimizer", "runs", "best_val_acc", "best_macro_f1", "mean_test_acc"],
    "rejects": ["data_root", "source_csv", "reason", "n_rows", "first_line", "last_line"],
    "epochs": ["epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"],
}
# Over the champion's scores of the catalog; their values are tested in tests/test_attribution.py.
ATTRIBUTION_EXPECTED = {
    "attributions": ["filename", "catalog_artist", "attributed_artist", "probability", "catalog_artist_probability",
                     "top_artists", "data_root"],
    "possible_misattributions": ["filename", "catalog_artist", "catalog_artist_probability", "rival_artist",
                                 "rival_probability", "data_root", "source"],
    "similar_paintings": ["filename", "artist", "distance", "data_root"],
    "artist_neighbours": ["artist", "neighbour", "rank", "distance", "paintings", "neighbour_paintings"],
}
# Over curators' verdicts; their values are tested in tests/test_reviews.py.
REVIEW_EXPECTED = {
    "label_overrides": ["data_root", "filename", "title", "csv_artist", "curator_artist", "reviewer", "reviewed_at",
                        "review_id", "note"],
}


@pytest.fixture
def populated(clean_db):
    """Two evaluated runs on one dataset version (adam, then sgd), run 1 the champion."""
    with psycopg.connect(clean_db) as conn:
        conn.execute("INSERT INTO paintings (filename, artist, data_root, rel_path, width, height, mode, source_csv) "
                     "VALUES ('1.jpg', 'Ann', '/d', 'train/1.jpg', 10, 10, 'RGB', 'all_data_info.csv')")
        conn.execute("INSERT INTO rejects (data_root, source_csv, line_no, filename, reason) VALUES "
                     "('/d', 'all_data_info.csv', 3, 'x.jpg', 'missing_file'), "
                     "('/d', 'all_data_info.csv', 9, 'y.jpg', 'missing_file'),"
                     "('/d', 'all_data_info.csv', 5, 'z.jpg', 'undecodable')")
        conn.execute("INSERT INTO dataset_versions (content_hash, config, artists, artist_counts) "
                     "VALUES ('h', '{}', '[\"Ann\", \"Bo\"]', '{}')")
        for run_id, opt, acc, f1, finished in ((1, "adam", 0.8, 0.75, "2026-01-01"),
                                               (2, "sgd", 0.6, 0.55, "2026-01-02")):
            conn.execute("INSERT INTO runs (id, run_key, dataset_version_id, config, status, run_dir, test_accuracy, "
                         "macro_f1, top3_accuracy, open_set_auroc, finished_at) VALUES (%s, %s, 1, %s, 'evaluated', "
                         "'/r', %s, %s, 1.0, 0.7, %s)",
                         (run_id, f"k{run_id}",
                          json.dumps({"backbone": "resnet50", "optimizer": opt, "targets": ["artist"],
                                      "fine_tune": "all", "image_size": 64, "learning_rate": 0.001}),
                          acc, f1, finished))
            for epoch, val in ((1, acc - 0.2), (2, acc - 0.1)):
                conn.execute("INSERT INTO epochs (run_id, epoch, loss, accuracy, val_loss, val_accuracy, "
                             "learning_rate, seconds) VALUES (%s, %s, 1.0, 0.5, 1.1, %s, 0.001, 2.0)",
                             (run_id, epoch, val))
            conn.execute("INSERT INTO class_metrics VALUES (%s, 'artist', 'Ann', 0.9, %s, 0.8, 5, %s), "
                         "(%s, 'artist', 'Bo', 0.7, 0.6, 0.65, 5, 0.6)", (run_id, acc, acc, run_id))
            conn.execute("INSERT INTO confusion VALUES (%s, 'artist', 'Ann', 'Ann', 4), (%s, 'artist', 'Ann', 'Bo', 1),"
                         "(%s, 'artist', 'Bo', 'Ann', 2), (%s, 'artist', 'Bo', 'Bo', 3)", (run_id,) * 4)
        conn.execute("SELECT setval('runs_id_seq', 2)")
        conn.execute("INSERT INTO promotions (run_id, dataset_version_id, promoted, candidate_f1, reasons) "
                     "VALUES (1, 1, true, 0.75, '[\"first champion\"]')")
        conn.execute("INSERT INTO promotions (run_id, dataset_version_id, champion_run_id, promoted, candidate_f1, "
                     "champion_f1, reasons) VALUES (2, 1, 1, false, 0.55, 0.75, '[\"macro-F1 0.550 < 0.750\"]')")
        conn.execute("INSERT INTO champion (run_id) VALUES (1)")
    return clean_db


def test_every_named_query_is_listed_described_and_tested():
    names = {q.name for q in list_queries()}
    assert names == set(EXPECTED) | set(ATTRIBUTION_EXPECTED) | set(REVIEW_EXPECTED)
    assert all(q.description for q in list_queries())


def test_attribution_queries_have_their_columns_on_an_unscored_catalog(populated):
    params = {"similar_paintings": {"filename": "1.jpg"}}
    for name, columns in {**ATTRIBUTION_EXPECTED, **REVIEW_EXPECTED}.items():
        got, rows = run_query(name, params.get(name), populated)
        assert got == columns and rows == [], name


def test_every_query_runs_with_its_columns(populated):
    params = {"artist_history": {"artist": "Ann"}}
    for name, columns in EXPECTED.items():
        got, rows = run_query(name, params.get(name), populated)
        assert got == columns, name
        assert rows, f"{name} returned no rows"


def test_query_values(populated):
    _, rows = run_query("latest_metrics", None, populated)  # latest = run 2
    assert [(r[0], float(r[3])) for r in rows] == [("Ann", 0.8), ("Bo", 0.65)] and float(rows[0][5]) == 0.6
    _, rows = run_query("latest_metrics", {"run_id": "1"}, populated)
    assert float(rows[0][5]) == 0.8
    _, rows = run_query("compare_runs", {"limit": "1"}, populated)
    assert len(rows) == 1 and rows[0][0] == 2 and rows[0][3] == "sgd" and rows[0][7] == 2
    assert float(rows[0][8]) == 0.5 and rows[0][13] is False
    _, rows = run_query("confused_pairs", {"run_id": "1"}, populated)
    assert [(r[0], r[1], r[2], float(r[3])) for r in rows] == [("Bo", "Ann", 2, 0.4), ("Ann", "Bo", 1, 0.2)]
    _, rows = run_query("champion_history", None, populated)
    assert [(r[2], r[3], r[7]) for r in rows] == [(2, False, False), (1, True, True)]
    assert rows[0][8] == ["macro-F1 0.550 < 0.750"]
    _, rows = run_query("artist_history", {"artist": "Ann"}, populated)
    assert [(r[0], float(r[5])) for r in rows] == [(1, 0.8), (2, 0.6)]
    _, rows = run_query("optimizer_comparison", None, populated)
    assert [(r[0], r[1], float(r[2])) for r in rows] == [("adam", 1, 0.7), ("sgd", 1, 0.5)]
    _, rows = run_query("rejects", None, populated)
    assert [(r[2], r[3], r[4], r[5]) for r in rows] == [("missing_file", 2, 3, 9), ("undecodable", 1, 5, 5)]
    _, rows = run_query("epochs", {"run_id": "2"}, populated)
    assert [r[0] for r in rows] == [1, 2]


def test_query_parameter_errors(populated):
    with pytest.raises(ConfigError, match="parameter 'artist' is required"):
        run_query("artist_history", None, populated)
    with pytest.raises(ConfigError, match="has no parameter"):
        run_query("rejects", {"run_id": "1"}, populated)
    with pytest.raises(ConfigError, match="must be int"):
        run_query("latest_metrics", {"run_id": "one"}, populated)
    with pytest.raises(ConfigError, match="known queries: .*compare_runs"):
        run_query("nope", None, populated)


def test_parse_query_header():
    q = parse_query("x", "-- description: d\n-- param: a int = latest\n-- param: b text\nSELECT 1")
    params = [(p.name, p.type, p.default) for p in q.params]
    assert q.description == "d" and params == [("a", "int", "latest"), ("b", "text", None)]


def test_sql_cli_formats(populated, capsys):
    assert main(["sql", "confused_pairs", "--param", "run_id=1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"true_artist": "Bo", "predicted_artist": "Ann", "count": 2, "share_of_true": 0.4}
    assert main(["sql", "rejects", "--csv"]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0] == EXPECTED["rejects"] and len(table) == 3
    assert main(["sql", "latest_metrics"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == EXPECTED["latest_metrics"] and "(2 rows)" in out
    assert main(["sql", "--list"]) == 0
    assert "confused_pairs" in capsys.readouterr().out
    assert main(["sql", "artist_history"]) == 2
    err = capsys.readouterr().err
    assert "--param artist=VALUE" in err and "Traceback" not in err


def test_runs_cli(populated, capsys):
    assert main(["runs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in rows] == [2, 1] and rows[1]["is_champion"] is True


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("synth", "ingest", "migrate", "run", "train", "evaluate", "promote", "report", "predict", "verify",
                "metrics", "sql", "runs", "demo"):
        assert f"    {cmd} " in out or f"    {cmd}\n" in out, cmd
