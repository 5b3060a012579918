"""Training on the real database: resume from checkpoints, multi-task runs, evaluation rows,
prediction and verification from the CLI."""

import json

import keras
import numpy as np
import psycopg
import pytest
from conftest import traced_steps

from painting_ml import pipeline  # noqa: E402
from painting_ml.cli import main  # noqa: E402
from painting_ml.core.config import CPU_DEMO, RunConfig  # noqa: E402
from painting_ml.learn.training import train  # noqa: E402

pytestmark = pytest.mark.train


@pytest.fixture(scope="module", autouse=True)
def traced():
    """The training engine's own tests run its steps traced, as production does."""
    with traced_steps():
        yield


def small_cfg(data, **kw):
    base = dict(data_dir=str(data), n_artists=3, backbone="resnet18", image_size=32, batch_size=16, epochs=3,
                online_augment=False, augment=(), wandb=False, head_units=32, early_stopping_patience=0)
    return RunConfig(**{**CPU_DEMO, **base, **kw})


class Boom(RuntimeError):
    pass


class FailAt(keras.callbacks.Callback):
    """Stands in for a worker dying: raises when epoch ``at`` (0-based) begins."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise Boom(f"injected failure at epoch {epoch + 1}")


class Seen(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


@pytest.fixture(scope="module")
def version(db_url, tiny_data):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE paintings, rejects, dataset_versions, runs RESTART IDENTITY CASCADE")
    cfg = small_cfg(tiny_data)
    pipeline.ingest_step(cfg)
    vid = pipeline.split_step(cfg, pipeline.select_artists_step(cfg))
    pipeline.augment_step(cfg, vid)
    return vid


def epoch_rows(url, run_id):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT epoch, phase FROM epochs WHERE run_id = %s ORDER BY epoch", (run_id,)).fetchall()


def test_retry_resumes_from_the_last_checkpoint(db_url, tiny_data, version):
    cfg = small_cfg(tiny_data)
    with pytest.raises(Boom):
        train(cfg, version, "test:resume", callbacks=[FailAt(2)])
    with psycopg.connect(db_url) as conn:
        run_id, status, error = conn.execute("SELECT id, status, error FROM runs "
                                             "WHERE run_key = 'test:resume'").fetchone()
    # The run that died says so, with the error; it is not left 'running'.
    assert status == "failed" and error == "Boom: injected failure at epoch 3"
    assert epoch_rows(db_url, run_id) == [(1, 1), (2, 1)]
    seen = Seen()
    assert train(cfg, version, "test:resume", callbacks=[seen]) == run_id
    assert seen.epochs == [2]  # epochs 1-2 were not trained again
    assert epoch_rows(db_url, run_id) == [(1, 1), (2, 1), (3, 1)]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT status, error FROM runs WHERE id = %s", (run_id,)).fetchone() == ("trained", None)


def test_two_phase_retry_skips_the_finished_phase(db_url, tiny_data, version):
    cfg = small_cfg(tiny_data, fine_tune="two_phase", head_epochs=1, epochs=3, fine_tune_stages=2)
    with pytest.raises(Boom):
        train(cfg, version, "test:two-phase", callbacks=[FailAt(2)])
    seen = Seen()
    run_id = train(cfg, version, "test:two-phase", callbacks=[seen])
    assert seen.epochs == [2]
    assert epoch_rows(db_url, run_id) == [(1, 1), (2, 2), (3, 2)]
    with psycopg.connect(db_url) as conn:
        lrs = [r[0] for r in conn.execute("SELECT learning_rate FROM epochs WHERE run_id = %s ORDER BY epoch",
                                          (run_id,))]
    assert lrs[0] == pytest.approx(1e-3) and lrs[1] == pytest.approx(1e-4)


@pytest.fixture(scope="module")
def multitask_run(db_url, tiny_data, version):
    cfg = small_cfg(tiny_data, targets=("artist", "style", "genre"), loss_weights={"genre": 0.5}, epochs=2,
                    label_smoothing=0.1, optimizer="adamw")
    run_id = train(cfg, version, "test:multitask")
    summary = pipeline.evaluate_step(run_id)
    return run_id, summary


def test_multitask_evaluation_rows(db_url, multitask_run):
    run_id, summary = multitask_run
    with psycopg.connect(db_url) as conn:
        classes = conn.execute("SELECT classes FROM runs WHERE id = %s", (run_id,)).fetchone()[0]
        targets = dict(conn.execute("SELECT target, sum(support) FROM class_metrics WHERE run_id = %s GROUP BY target",
                                    (run_id,)).fetchall())
        confusion = dict(conn.execute("SELECT target, sum(count) FROM confusion WHERE run_id = %s GROUP BY target",
                                      (run_id,)).fetchall())
        n_test = conn.execute("SELECT count(*) FROM predictions WHERE run_id = %s", (run_id,)).fetchone()[0]
        top3 = conn.execute("SELECT top3, other_targets FROM predictions WHERE run_id = %s LIMIT 1",
                            (run_id,)).fetchone()
        verification = conn.execute("SELECT subset, score, n_pairs, auc FROM verification WHERE run_id = %s",
                                    (run_id,)).fetchall()
        epoch_metrics = conn.execute("SELECT metrics FROM epochs WHERE run_id = %s AND epoch = 1",
                                     (run_id,)).fetchone()[0]
        runs_row = conn.execute("SELECT top3_accuracy, open_set_auroc, summary FROM runs WHERE id = %s",
                                (run_id,)).fetchone()
    assert set(classes) == {"artist", "style", "genre"} and len(classes["artist"]) == 3
    assert set(targets) == {"artist", "style", "genre"}
    assert targets["artist"] == n_test == confusion["artist"] == summary["n_test"]
    assert len(top3[0]) == 3 and top3[0][0][1] >= top3[0][1][1] >= top3[0][2][1]
    assert set(top3[1]) == {"style", "genre"}
    assert {"val_style_accuracy", "genre_loss", "val_artist_accuracy"} <= set(epoch_metrics)
    assert {(s, k) for s, k, _, _ in verification} == {(s, k) for s in ("seen", "unseen")
                                                      for k in ("prob_product", "embedding_cosine")}
    assert all(n > 0 for _, _, n, _ in verification)
    assert summary["top3_accuracy"] == 1.0 == runs_row[0]  # 3 artists: the truth is always in the top 3
    assert summary["open_set"]["n_unseen"] > 0 and 0.0 <= runs_row[1] <= 1.0
    assert set(runs_row[2]["targets"]) == {"artist", "style", "genre"}


def test_reevaluation_replaces_rows(db_url, multitask_run):
    run_id, _ = multitask_run
    count = "SELECT (SELECT count(*) FROM class_metrics WHERE run_id = %(r)s), " \
            "(SELECT count(*) FROM predictions WHERE run_id = %(r)s), " \
            "(SELECT count(*) FROM confusion WHERE run_id = %(r)s)"
    with psycopg.connect(db_url) as conn:
        before = conn.execute(count, {"r": run_id}).fetchone()
    pipeline.evaluate_step(run_id)
    with psycopg.connect(db_url) as conn:
        assert conn.execute(count, {"r": run_id}).fetchone() == before


def test_predict_and_verify_cli(capsys, db_url, tiny_data, multitask_run):
    run_id, _ = multitask_run
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT p.data_root || '/' || p.rel_path, i.artist FROM dataset_items i "
                            "JOIN paintings p USING (filename) WHERE i.split = 'test' ORDER BY i.filename "
                            "LIMIT 2").fetchall()
    image = rows[0][0]
    assert main(["predict", image, rows[1][0], "--run-id", str(run_id), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == run_id and len(out["predictions"]) == 2
    probs = [a["probability"] for a in out["predictions"][0]["artists"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-4)
    assert {"style", "genre"} <= set(out["predictions"][0])

    assert main(["verify", image, image, "--run-id", str(run_id), "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["embedding_cosine"] == pytest.approx(1.0, abs=1e-4)
    p = np.array([a["probability"] for a in out["predictions"][0]["artists"]])
    assert same["same_artist_probability"] == pytest.approx(float((p ** 2).sum()), abs=1e-3)

    assert main(["predict", str(tiny_data / "nope.jpg"), "--run-id", str(run_id)]) == 2
    err = capsys.readouterr().err
    assert "nope.jpg not found" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
