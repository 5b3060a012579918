"""The data-quality gate: pure checks on tiny figures, then the real database on a generated set
whose artist collapses between two ingests."""

import csv
import logging

import psycopg
import pytest

from painting_ml import pipeline
from painting_ml.core.config import RunConfig
from painting_ml.core.errors import DataQualityError
from painting_ml.data.validation import Finding, check_drift, check_reject_rate, check_split_counts, measure_drift

pytestmark = pytest.mark.db

CFG = RunConfig(data_dir="-", max_reject_rate=0.1, warn_reject_rate=0.02, min_split_paintings=4,
                warn_split_paintings=6, max_drift=0.5, warn_drift=0.2)


@pytest.mark.parametrize("rejected,usable,expected", [
    (0, 100, []), (1, 99, []), (3, 97, ["warning"]), (11, 89, ["failure"]), (0, 0, []),
])
def test_reject_rate_levels(rejected, usable, expected):
    assert [f.level for f in check_reject_rate(rejected, usable, CFG)] == expected


def test_split_counts_name_every_artist_below_a_level():
    counts = {"Monet": {"train": 30, "val": 6, "test": 8}, "Degas": {"train": 30, "val": 5, "test": 3},
              "Klee": {"train": 2, "val": 6, "test": 6}}
    assert check_split_counts(counts, CFG) == [
        Finding("failure", "split_counts", "fewer than 4 paintings per split: Degas test 3, Klee train 2"),
        Finding("warning", "split_counts", "fewer than 6 paintings per split: Degas val 5"),
    ]


def test_drift_measures_and_levels():
    before = {"artist_totals": {"Monet": 100, "Degas": 100, "Klee": 100}, "image_side": {"median": 400.0}}
    after = {"artist_totals": {"Monet": 100, "Degas": 70, "Renoir": 100}, "image_side": {"median": 300.0}}
    drift = measure_drift(after, before)
    assert drift["count_change"] == {"Degas": 0.3, "Monet": 0.0} and drift["max_count_change"] == 0.3
    assert (drift["artists_added"], drift["artists_removed"]) == (["Renoir"], ["Klee"])
    assert drift["replaced_share"] == pytest.approx(1 / 3, abs=1e-3) and drift["median_side_change"] == 0.25
    assert [(f.level, f.message) for f in check_drift(drift, CFG)] == [
        ("warning", "artist counts moved more than 20%: Degas 30%"),
        ("warning", "33% of the artists replaced (added ['Renoir'], removed ['Klee'])"),
        ("warning", "median image side moved 25%"),
    ]
    collapsed = measure_drift({**before, "artist_totals": {**before["artist_totals"], "Klee": 10}}, before)
    assert check_drift(collapsed, CFG) == [Finding("failure", "drift", "artist counts moved more than 50%: Klee 90%")]


def _prepare(cfg):
    pipeline.ingest_step(cfg)
    return pipeline.split_step(cfg, pipeline.select_artists_step(cfg))


def test_the_gate_stops_a_collapsed_artist_and_stores_its_figures(clean_db, tmp_path, caplog):
    from painting_ml.data.synth import generate

    data = tmp_path / "data"
    generate(data, artists=3, per_artist=40, size=20, seed=3, test_only_artists=0, broken=0)
    cfg = CFG.replace(data_dir=str(data), n_artists=3, strategy="capped", cap=40)
    first = _prepare(cfg)
    ok = pipeline.validate_step(cfg, first)
    assert ok["status"] == "ok" and ok["previous_version_id"] is None and ok["findings"] == []

    with caplog.at_level(logging.WARNING, logger="painting_ml.data.validation"):
        warned = pipeline.validate_step(cfg.replace(warn_split_paintings=7), first)
    assert warned["status"] == "warning" and "data-quality warning (split_counts)" in caplog.text

    # A half-copied folder: all but 8 of one artist's images are gone.
    with open(data / "all_data_info.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    victim = sorted({r["artist"] for r in rows})[0]
    deleted = 0
    for r in [r for r in rows if r["artist"] == victim][8:]:
        for path in data.glob(f"*/{r['new_filename']}"):
            path.unlink()
            deleted += 1
    second = _prepare(cfg)
    assert second != first
    with pytest.raises(DataQualityError) as err:
        pipeline.validate_step(cfg, second)
    message = str(err.value)
    assert message.startswith(f"data-quality gate failed on dataset version {second}")
    gone = deleted + 1  # the generated set's one CSV row without a file was rejected from the start
    assert f"reject_rate: {gone} of {len(rows)} CSV rows rejected ({gone / len(rows):.1%} > 10.0%)" in message
    assert f"drift: artist counts moved more than 50%: {victim} 80%" in message
    assert f"{victim} val" in message and "\n" not in message

    with psycopg.connect(clean_db) as conn:
        stored = conn.execute("SELECT version_id, status, previous_version_id, figures, thresholds "
                              "FROM dataset_validations ORDER BY id").fetchall()
    assert [(v, s) for v, s, *_ in stored] == [(first, "ok"), (first, "warning"), (second, "failed")]
    _, _, previous, figures, thresholds = stored[-1]
    assert previous == first and figures["rejected"] == gone and figures["usable"] == len(rows) - gone
    assert figures["split_counts"][victim]["train"] + figures["split_counts"][victim]["val"] + \
        figures["split_counts"][victim]["test"] == 8
    assert figures["drift"]["count_change"][victim] == 0.8 and figures["image_side"]["median"] > 0
    assert thresholds["max_drift"] == 0.5 and thresholds["min_split_paintings"] == 4
