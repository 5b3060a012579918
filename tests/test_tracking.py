"""wandb tracking: training, evaluation and promotion of one run land in one wandb run, offline.

The offline run folders are read back with wandb's own protobuf ``Record`` (the installed wandb has
no Python reader for its ``.wandb`` transaction log, so the few lines of framing are read here).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from painting_ml.core.errors import PaintingMLError
from painting_ml.core.settings import reload_settings
from painting_ml.learn.tracking import (
    MODEL_ARTIFACT,
    evaluation_summary,
    log_champion,
    log_evaluation,
    new_wandb_id,
    start_training,
    wandb_dir,
)

pytestmark = pytest.mark.db

CLASSES = {"artist": ["Ann", "Bob"], "style": ["Baroque", "Cubism"]}
SUMMARY = {"test_accuracy": 0.75, "macro_f1": 0.7, "top3_accuracy": 1.0, "n_test": 8, "chance": 0.5,
           "targets": {"artist": {"accuracy": 0.75, "macro_f1": 0.7, "top3_accuracy": 1.0, "n": 8},
                       "style": {"accuracy": 0.625, "macro_f1": 0.6, "top3_accuracy": 1.0, "n": 8}},
           "open_set": {"auroc": 0.8, "threshold": 0.4, "unseen_rejection_rate": 0.5,
                        "known_rejection_rate": 0.1, "n_known": 8, "n_unseen": 4},
           "verification": {}}


# --- reading an offline run folder ---------------------------------------------------------------

def _records(path: Path):
    """wandb's protobuf records of a ``.wandb`` file: a 7-byte header (":W&B", magic, version),
    then LevelDB-log framed chunks (crc32, length, type) in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk)
            pending = b""
            yield record
        elif kind in (2, 3):  # first, middle
            pending += chunk


def _offline_runs(wandb_id: str) -> list[Path]:
    """The run's offline folders, read only after wandb's service has shut down: ``finish()``
    returns once the run is marked complete, but the service may still hold the tail of the
    ``.wandb`` log in its write buffer (a loaded CI machine once read a header and no records)."""
    import wandb

    wandb.teardown()
    return sorted(wandb_dir().glob(f"offline-run-*-{wandb_id}*"))


def _read(folder: Path) -> dict:
    """What one offline run folder holds: run ids, config, summary (nested items as dicts),
    history keys and artifacts."""
    out = {"run_ids": set(), "config": {}, "summary": {}, "history": set(), "artifacts": []}
    (wandb_file,) = folder.glob("*.wandb")
    for r in _records(wandb_file):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["run_ids"].add(r.run.run_id)
            _update(out["config"], r.run.config.update)
        elif kind == "config":
            _update(out["config"], r.config.update)
        elif kind == "summary":
            _update(out["summary"], r.summary.update)
        elif kind == "history":
            out["history"] |= {i.key or i.nested_key[0] for i in r.history.item}
        elif kind == "artifact":
            out["artifacts"].append(r.artifact)
    return out


def _update(into: dict, items) -> None:
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        node = into
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)


def _table(folder: Path, summary: dict, key: str) -> dict:
    ref = summary[key]
    assert ref["_type"] == "table-file"
    return json.loads((folder / "files" / ref["path"]).read_text())


# --- a run row as evaluation leaves it -----------------------------------------------------------

def _add_run(url: str, run_id: int = 1, *, wandb_id: str | None, wandb: bool = True) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO dataset_versions (id, content_hash, config, artists, artist_counts) "
                     "VALUES (1, 'h1', '{}', '[\"Ann\", \"Bob\"]', '{}') ON CONFLICT DO NOTHING")
        conn.execute(
            "INSERT INTO runs (id, run_key, dataset_version_id, config, status, run_dir, classes, wandb_id, "
            "test_accuracy, macro_f1, top3_accuracy, open_set_auroc, summary) "
            "VALUES (%s, %s, 1, %s, 'evaluated', 'runs/r', %s, %s, 0.75, 0.7, 1.0, 0.8, %s)",
            (run_id, f"k{run_id}", Jsonb({"wandb": wandb, "epochs": 2}), Jsonb(CLASSES), wandb_id, Jsonb(SUMMARY)))
        for target, label, p, r, f, n in [("artist", "Ann", 0.8, 0.9, 0.85, 5),
                                          ("artist", "Bob", 0.6, 0.5, 0.55, 3),
                                          ("style", "Baroque", 0.7, 0.6, 0.65, 4),
                                          ("style", "Cubism", 0.5, 0.6, 0.55, 4)]:
            conn.execute("INSERT INTO class_metrics VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                         (run_id, target, label, p, r, f, n, r))
        for target, true, pred, count in [("artist", "Ann", "Ann", 4), ("artist", "Ann", "Bob", 1),
                                          ("artist", "Bob", "Bob", 2), ("artist", "Bob", "Ann", 1),
                                          ("style", "Baroque", "Baroque", 4), ("style", "Cubism", "Baroque", 3),
                                          ("style", "Cubism", "Cubism", 1)]:
            conn.execute("INSERT INTO confusion VALUES (%s, %s, %s, %s, %s)", (run_id, target, true, pred, count))
        conn.execute("INSERT INTO verification VALUES (%s, 'seen', 'embedding_cosine', 0.9, 28, 10), "
                     "(%s, 'unseen', 'embedding_cosine', NULL, 6, 0)", (run_id, run_id))


@pytest.fixture
def wandb_mode(monkeypatch):
    """Set WANDB_MODE for one test; the settings are read again before and after."""
    def set_mode(mode: str) -> None:
        monkeypatch.setenv("WANDB_MODE", mode)
        reload_settings()
    yield set_mode
    monkeypatch.undo()
    reload_settings()


# --- tests --------------------------------------------------------------------------------------

def test_wandb_ids_are_random_and_never_the_database_id():
    ids = {new_wandb_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"painting-[0-9a-f]{12}", i) for i in ids)


@pytest.mark.e2e
def test_training_evaluation_and_promotion_land_in_one_wandb_run(clean_db, tmp_path):
    wandb_id = new_wandb_id()
    _add_run(clean_db, wandb_id=wandb_id)

    run = start_training({"wandb": True, "epochs": 2, "run_id": 1}, 1, wandb_id, enabled=True)
    for epoch in (1, 2):
        run.log({"loss": 1.0 / epoch, "val_accuracy": 0.5 * epoch}, step=epoch)
    run.finish()
    assert log_evaluation(1, clean_db) is True
    model = tmp_path / "model.keras"
    model.write_bytes(b"not really keras, any file will do")
    assert log_champion(1, model, clean_db) is True

    # One folder per step, all in $PAINTING_HOME/wandb, all for the same wandb run id.
    folders = _offline_runs(wandb_id)
    assert len(folders) == 3 and all(f.parent == wandb_dir() for f in folders)
    training, evaluation, promotion = map(_read, folders)
    assert training["run_ids"] == evaluation["run_ids"] == promotion["run_ids"] == {wandb_id}
    assert training["config"]["epochs"] == 2 and {"loss", "val_accuracy"} <= training["history"]

    s = evaluation["summary"]
    assert s["eval/test_accuracy"] == 0.75 and s["eval/macro_f1"] == 0.7 and s["eval/top3_accuracy"] == 1.0
    assert s["eval/open_set_auroc"] == 0.8 and s["eval/open_set/unseen_rejection_rate"] == 0.5
    assert s["eval/style/accuracy"] == 0.625 and s["eval/chance"] == 0.5 and s["eval/n_test"] == 8
    assert s["eval/verification/seen/embedding_cosine/auc"] == 0.9
    assert "eval/verification/unseen/embedding_cosine/auc" not in s  # no positive pair: NULL, left out
    assert {"eval/artist/classes", "eval/style/classes", "eval/artist/confusion_table",
            "eval/verification"} <= evaluation["history"]

    artist = _table(folders[1], s, "eval/artist/classes")
    assert artist["columns"] == ["label", "precision", "recall", "f1", "support", "accuracy"]
    assert artist["data"] == [["Ann", 0.8, 0.9, 0.85, 5, 0.9], ["Bob", 0.6, 0.5, 0.55, 3, 0.5]]
    confusion = _table(folders[1], s, "eval/style/confusion_table")
    assert confusion["columns"] == ["Actual", "Predicted", "nPredictions"]
    assert confusion["data"] == [["Baroque", "Baroque", 4], ["Baroque", "Cubism", 0],  # zeros too: a full grid
                                 ["Cubism", "Baroque", 3], ["Cubism", "Cubism", 1]]
    chart = evaluation["config"]["_wandb"]["visualize"]["eval/style/confusion"]["panel_config"]
    assert chart["panelDefId"] == "wandb/confusion_matrix/v1"  # the chart wandb.plot.confusion_matrix draws
    verification = _table(folders[1], s, "eval/verification")
    assert verification["data"] == [["seen", "embedding_cosine", 0.9, 28, 10],
                                    ["unseen", "embedding_cosine", None, 6, 0]]

    (artifact,) = promotion["artifacts"]
    assert (artifact.name, artifact.type) == (MODEL_ARTIFACT, "model")
    assert {"champion", "run-1"} <= set(artifact.aliases)
    assert [e.path for e in artifact.manifest.contents] == ["model.keras"]
    assert json.loads(artifact.metadata)["macro_f1"] == 0.7
    assert promotion["summary"]["champion"] is True


@pytest.mark.e2e
def test_a_database_reset_does_not_reuse_the_wandb_run(clean_db):
    """Run 1 before and after a reset are two wandb runs: the id comes from new_wandb_id, not runs.id."""
    seen = []
    for _ in range(2):
        with psycopg.connect(clean_db, autocommit=True) as conn:
            conn.execute("TRUNCATE runs, dataset_versions RESTART IDENTITY CASCADE")
        _add_run(clean_db, wandb_id=new_wandb_id())
        with psycopg.connect(clean_db) as conn:
            run_id, wandb_id = conn.execute("SELECT id, wandb_id FROM runs").fetchone()
        assert run_id == 1
        start_training({"wandb": True}, run_id, wandb_id).finish()
        seen.append(wandb_id)
    assert seen[0] != seen[1]
    assert [_read(f)["run_ids"] for w in seen for f in _offline_runs(w)] == [{seen[0]}, {seen[1]}]


def test_nothing_is_logged_when_tracking_is_off(clean_db, tmp_path, wandb_mode):
    model = tmp_path / "model.keras"
    model.write_bytes(b"m")
    before = set(wandb_dir().glob("offline-run-*")) if wandb_dir().exists() else set()

    off = new_wandb_id()
    _add_run(clean_db, 1, wandb_id=off, wandb=False)  # the run's own option
    assert start_training({"wandb": False}, 1, off, enabled=False) is None
    assert log_evaluation(1, clean_db) is False and log_champion(1, model, clean_db) is False

    _add_run(clean_db, 2, wandb_id=None)  # a row made before wandb ids existed
    assert start_training({}, 2, None) is None
    assert log_evaluation(2, clean_db) is False and log_champion(2, model, clean_db) is False

    on = new_wandb_id()
    _add_run(clean_db, 3, wandb_id=on)
    wandb_mode("disabled")  # WANDB_MODE=disabled wins over the run's option
    assert start_training({"wandb": True}, 3, on) is None
    assert log_evaluation(3, clean_db) is False and log_champion(3, model, clean_db) is False

    after = set(wandb_dir().glob("offline-run-*")) if wandb_dir().exists() else set()
    assert after == before


def test_unknown_run_and_missing_model_are_one_line_errors(clean_db, tmp_path):
    with pytest.raises(PaintingMLError, match="run 99 does not exist"):
        log_evaluation(99, clean_db)
    _add_run(clean_db, wandb_id=new_wandb_id())
    with pytest.raises(PaintingMLError, match="model file .*missing.keras of run 1 not found"):
        log_champion(1, tmp_path / "missing.keras", clean_db)


def test_evaluation_summary_leaves_out_missing_figures():
    run = {"test_accuracy": 0.5, "macro_f1": 0.4, "top3_accuracy": None, "open_set_auroc": None,
           "summary": {"n_test": 4, "open_set": {"auroc": None, "n_unseen": 0}, "targets": {}}}
    assert evaluation_summary(run, [{"subset": "seen", "score": "prob_product", "auc": None, "n_pairs": 0}]) == {
        "eval/test_accuracy": 0.5, "eval/macro_f1": 0.4, "eval/n_test": 4, "eval/open_set/n_unseen": 0,
        "eval/verification/seen/prob_product/n_pairs": 0}
