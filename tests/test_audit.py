"""The label audit end to end on the tiny set (k=3, the full recipe, five epochs a fold): every
painting's probabilities come from the one fold model that never saw it (checked in the database),
cleanlab's verdicts are stored, possible_misattributions switches to the audit, and the fold runs
stay out of every "latest run" pick and of the champion's way."""

import json
import time

import psycopg
import pytest
from conftest import tiny_run_config

from painting_ml import pipeline
from painting_ml.cli import main
from painting_ml.core.errors import PaintingMLError
from painting_ml.learn.audit import held_out_items
from painting_ml.results.queries import run_query

pytestmark = pytest.mark.train

K = 3


@pytest.fixture(scope="module")
def audited(db_url, tiny_data):
    """A retrain run already there (evaluated, older), then labels flipped in the catalog and an audit."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE paintings, rejects, dataset_versions, runs, audits, label_reviews "
                     "RESTART IDENTITY CASCADE")
    cfg = tiny_run_config(tiny_data, epochs=5, early_stopping_patience=0)
    pipeline.ingest_step(cfg)
    with psycopg.connect(db_url, autocommit=True) as conn:
        # A retrain's run, as the picks of "the latest run" would find it before any audit.
        conn.execute("INSERT INTO dataset_versions (content_hash, config, artists, artist_counts) "
                     "VALUES ('retrain', '{}', '[]', '{}')")
        conn.execute("INSERT INTO runs (run_key, dataset_version_id, config, status, run_dir, finished_at) "
                     "VALUES ('painting_retrain:r1:f', 1, '{}', 'evaluated', '/r', now() - interval '1 day')")
        conn.execute("INSERT INTO epochs (run_id, epoch, loss) VALUES (1, 1, 1.0)")
        artists = [r[0] for r in conn.execute(
            "SELECT artist FROM paintings WHERE gone_at IS NULL AND in_train GROUP BY artist "
            "ORDER BY count(*) DESC, artist LIMIT 3")]
        # Two paintings of the first artist catalogued as the second's, one of the third as the first's.
        flips = []
        for src, dst, n in ((artists[0], artists[1], 2), (artists[2], artists[0], 1)):
            files = [r[0] for r in conn.execute(
                "SELECT filename FROM paintings WHERE artist = %s AND gone_at IS NULL ORDER BY filename DESC "
                "LIMIT %s", (src, n))]
            conn.execute("UPDATE paintings SET artist = %s WHERE filename = ANY(%s)", (dst, files))
            flips += files
    t0 = time.perf_counter()
    out = pipeline.audit_all(cfg, folds=K, recipe="full", audit_key="test:audit")
    return {"out": out, "flips": flips, "seconds": time.perf_counter() - t0, "cfg": cfg, "url": db_url}


def test_every_painting_is_judged_by_the_one_model_that_never_saw_it(audited):
    audit_id = audited["out"]["audit_id"]
    with psycopg.connect(audited["url"]) as conn:
        n_pred, n_distinct = conn.execute(
            "SELECT count(*), count(DISTINCT filename) FROM audit_predictions WHERE audit_id = %s",
            (audit_id,)).fetchone()
        audited_set = conn.execute(
            "SELECT count(*) FROM dataset_items i JOIN audits a ON a.dataset_version_id = i.version_id "
            "WHERE a.id = %s", (audit_id,)).fetchone()[0]
        # For each prediction: how the run that made it saw the painting.
        seen_by_own_model = conn.execute(
            "SELECT count(*) FROM audit_predictions p "
            "JOIN audit_folds f ON f.audit_id = p.audit_id AND f.fold = p.fold "
            "JOIN runs r ON r.id = f.run_id "
            "JOIN dataset_items i ON i.version_id = r.dataset_version_id AND i.filename = p.filename "
            "WHERE p.audit_id = %s AND i.split <> 'test'", (audit_id,)).fetchone()[0]
        held_out_by_own_model = conn.execute(
            "SELECT count(*) FROM audit_predictions p "
            "JOIN audit_folds f ON f.audit_id = p.audit_id AND f.fold = p.fold "
            "JOIN runs r ON r.id = f.run_id AND r.dataset_version_id = f.dataset_version_id "
            "JOIN dataset_items i ON i.version_id = r.dataset_version_id AND i.filename = p.filename "
            "WHERE p.audit_id = %s AND i.split = 'test'", (audit_id,)).fetchone()[0]
        # ...while every other fold's model trained (or validated) on it.
        trained_by_others = conn.execute(
            "SELECT count(*) FROM audit_predictions p "
            "JOIN audit_folds f ON f.audit_id = p.audit_id AND f.fold <> p.fold "
            "JOIN runs r ON r.id = f.run_id "
            "JOIN dataset_items i ON i.version_id = r.dataset_version_id AND i.filename = p.filename "
            "WHERE p.audit_id = %s AND i.split IN ('train', 'val')", (audit_id,)).fetchone()[0]
        hashes = conn.execute("SELECT count(*) FROM audit_predictions p JOIN paintings q USING (data_root, filename) "
                              "WHERE p.audit_id = %s AND p.sha256 = q.sha256", (audit_id,)).fetchone()[0]
        dims = conn.execute("SELECT DISTINCT array_length(probabilities, 1), "
                            "round(sqrt((SELECT sum(x * x) FROM unnest(embedding) x))::numeric, 3), "
                            "array_length(neighbour_votes, 1), "
                            "round((SELECT sum(x) FROM unnest(neighbour_votes) x)::numeric, 6) "
                            "FROM audit_predictions WHERE audit_id = %s", (audit_id,)).fetchall()
    assert n_pred == n_distinct == audited_set == audited["out"]["audited"] > 30
    assert seen_by_own_model == 0 and held_out_by_own_model == n_pred
    assert trained_by_others == n_pred * (K - 1)
    assert hashes == n_pred  # the file each model saw
    assert dims == [(3, 1, 3, 1)]  # three artists' probabilities and vote shares, unit-length embeddings
    # The library's own guard: the held-out paintings of a fold are none of its run's train/val ones.
    for fold in range(K):
        run_id, items = held_out_items(audit_id, fold, audited["url"])
        assert items and all(i.split == "test" for i in items)


def test_the_neighbours_that_vote_are_the_paintings_the_fold_model_trained_on(audited):
    from painting_ml.learn.audit import training_items

    audit_id = audited["out"]["audit_id"]
    for fold in range(K):
        _, held_out = held_out_items(audit_id, fold, audited["url"])
        voters = training_items(audit_id, fold, audited["url"])
        assert voters and {i.split for i in voters} == {"train"}
        assert not {i.filename for i in voters} & {i.filename for i in held_out}


def test_grey_paintings_are_the_ones_compared_with_grey_views(audited):
    from painting_ml.learn.audit import predict_fold

    audit_id = audited["out"]["audit_id"]
    with psycopg.connect(audited["url"]) as conn:
        before = conn.execute("SELECT filename, neighbour_votes FROM audit_predictions WHERE audit_id = %s "
                              "ORDER BY filename", (audit_id,)).fetchall()
        grey = {r[0] for r in conn.execute("SELECT filename FROM paintings WHERE mode = 'L'")}
    assert grey, "the generated set holds grey JPEGs"
    counted = 0
    for fold in range(K):
        _, held_out = held_out_items(audit_id, fold, audited["url"])
        out = predict_fold(audit_id, fold, audited["url"])  # again: idempotent
        assert out["colourless"] == len(grey & {i.filename for i in held_out})
        counted += out["colourless"]
    assert counted >= 1
    with psycopg.connect(audited["url"]) as conn:
        after = conn.execute("SELECT filename, neighbour_votes FROM audit_predictions WHERE audit_id = %s "
                             "ORDER BY filename", (audit_id,)).fetchall()
    assert after == before  # predicting a fold again stores the same votes


@pytest.mark.unit
def test_neighbour_votes_count_the_labels_of_the_k_nearest_references():
    import numpy as np

    from painting_ml.learn.audit import neighbour_votes

    refs = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9]])
    labels = np.array([0, 0, 1, 2, 2])
    queries = np.array([[2.0, 0.1], [0.05, 1.0], [0.0, 0.0]])  # length does not matter (cosine)
    votes = neighbour_votes(queries, refs, labels, 3, k=3)
    assert np.allclose(votes[0], [2 / 3, 1 / 3, 0]) and np.allclose(votes[1], [0, 1 / 3, 2 / 3])
    assert np.allclose(votes.sum(axis=1), 1.0)  # a zero embedding still gets k votes
    rng = np.random.default_rng(0)
    q, r, y = rng.normal(size=(50, 8)), rng.normal(size=(30, 8)), rng.integers(0, 4, 30)
    assert np.array_equal(neighbour_votes(q, r, y, 4, chunk=7), neighbour_votes(q, r, y, 4))  # chunks change nothing
    assert np.allclose(neighbour_votes(q[:2], r[:2], y[:2], 4, k=5).sum(axis=1), 1.0)  # fewer references than k
    with pytest.raises(ValueError, match="references"):
        neighbour_votes(q, r[:0], y[:0], 4)
    with pytest.raises(ValueError, match="values"):
        neighbour_votes(q[:, :3], r, y, 4)


@pytest.mark.unit
def test_a_colourless_painting_is_compared_with_grey_views_of_the_voters(tmp_path, monkeypatch):
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from painting_ml.learn import audit, inference

    Image.new("L", (8, 8), 120).save(tmp_path / "grey.png")
    Image.new("RGB", (8, 8), (200, 20, 20)).save(tmp_path / "red.png")
    queries = [str(tmp_path / "grey.png"), str(tmp_path / "red.png")]
    voters = [f"r{i}.png" for i in range(4)]
    labels = np.array([0, 0, 1, 1])
    # The model's colour view puts the grey painting beside artist 1's voters (their look without
    # colour, say); its grey view beside artist 0's, which is what a grey copy of artist 0 is.
    colour = {"grey": [0.0, 1.0], "red": [1.0, 0.0], "r0": [1.0, 0.1], "r1": [1.0, 0.2], "r2": [0.1, 1.0],
              "r3": [0.2, 1.0]}
    grey = {"grey": [1.0, 0.0], "r0": [1.0, 0.1], "r1": [1.0, 0.2], "r2": [0.0, 1.0], "r3": [0.1, 1.0]}
    calls = []

    def fake_infer(rm, paths, batch_size=None, **kw):  # the model's two views, by file
        calls.append((len(paths), kw.get("grey", False)))
        return {"embedding": np.array([(grey if kw.get("grey") else colour)[Path(p).stem] for p in paths])}

    monkeypatch.setattr(inference, "infer", fake_infer)
    embedded = np.array([colour["grey"], colour["red"]])
    votes, colourless = audit.fold_votes(None, embedded, queries, voters, labels, 2, k=2)
    assert colourless.tolist() == [True, False]
    assert votes.tolist() == [[1.0, 0.0], [1.0, 0.0]]  # the grey painting too: artist 0, not the grey-looking 1
    assert calls == [(4, False), (1, True), (4, True)]  # grey views of the grey painting and the voters only
    calls.clear()
    votes, colourless = audit.fold_votes(None, embedded[1:], queries[1:], voters, labels, 2, k=2)
    assert not colourless.any() and calls == [(4, False)]  # no colourless painting: no extra pass


def test_the_audit_is_ranked_and_stored(audited):
    out = audited["out"]
    with psycopg.connect(audited["url"]) as conn:
        status, folds, recipe, summary = conn.execute(
            "SELECT status, folds, recipe, summary FROM audits WHERE id = %s", (out["audit_id"],)).fetchone()
        runs = conn.execute("SELECT r.status, r.purpose, r.config ->> 'class_weights', v.purpose "
                            "FROM audit_folds f JOIN runs r ON r.id = f.run_id "
                            "JOIN dataset_versions v ON v.id = r.dataset_version_id "
                            "WHERE f.audit_id = %s ORDER BY f.fold", (out["audit_id"],)).fetchall()
        issues = conn.execute("SELECT filename, quality, is_issue, rank FROM label_issues WHERE audit_id = %s",
                              (out["audit_id"],)).fetchall()
    assert status == "ranked" and folds == K and recipe == "full"
    assert runs == [("trained", "audit", "true", "audit")] * K  # never evaluated: never a candidate
    assert len(issues) == out["audited"] and sum(i[2] for i in issues) == out["flagged"]
    assert summary["seconds_per_fold"] > 0 and len(summary["folds"]) == K
    assert summary["cleanlab"]["judged"] == "neighbour_votes"
    # Each flagged painting shows both artists' shares of the votes (fifths: 5 neighbours).
    shares = [(t["catalog_votes"], t["suggested_votes"]) for t in out["top_issues"]]
    assert len(shares) == min(out["flagged"], 10)
    assert all(c + s_ <= 1 + 1e-9 and round(5 * c, 6) % 1 == 0 == round(5 * s_, 6) % 1 for c, s_ in shares)
    quality = {f: q for f, q, _, _ in issues}
    flipped = [quality[f] for f in audited["flips"] if f in quality]
    rest = [q for f, q in quality.items() if f not in audited["flips"]]
    assert len(flipped) == len(audited["flips"])
    # Even five epochs at 32 px doubt the flipped labels more than the rest.
    assert sum(flipped) / len(flipped) < sum(rest) / len(rest)
    print(f"\naudit of {out['audited']} paintings, k={K}: {summary['seconds_per_fold']:.1f} s of training per fold, "
          f"{audited['seconds']:.0f} s in all; flagged {out['flagged']}: "
          f"{[(t['filename'], t['catalog_artist'], t['suggested_artist']) for t in out['top_issues']]}; "
          f"flips {audited['flips']}")


def test_possible_misattributions_reads_the_audit(audited):
    columns, rows = run_query("possible_misattributions", None, audited["url"])
    assert columns[-1] == "source"
    assert len(rows) == audited["out"]["flagged"]
    assert {r[-1] for r in rows} <= {f"audit {audited['out']['audit_id']} (out-of-fold)"}


def test_fold_runs_are_never_the_latest_run(audited):
    url = audited["url"]
    with psycopg.connect(url) as conn:
        latest = conn.execute("SELECT id FROM runs WHERE status = 'evaluated' AND purpose = 'retrain' "
                              "ORDER BY finished_at DESC, id DESC LIMIT 1").fetchone()
        newest = conn.execute("SELECT max(id) FROM runs").fetchone()[0]
    assert latest == (1,) and newest > 1  # the fold runs are newer
    from painting_ml.learn.inference import champion_run_id

    assert champion_run_id(url) == 1  # no champion: the latest evaluated retrain run, not a fold run
    _, epochs = run_query("epochs", None, url)
    assert len(epochs) == 1  # the retrain run's one epoch
    _, versions = run_query("optimizer_comparison", None, url)
    assert [v[1] for v in versions] == [1]  # the retrain version's one run, never a fold version's
    from painting_ml.results.promotion import promote

    with pytest.raises(PaintingMLError, match="not evaluated"):
        promote(int(audited["out"]["summary"]["folds"][0]["run_id"]), 5.0, url=url)  # not evaluated


def test_a_rerun_with_the_same_key_resumes_and_changes_nothing(audited, capsys):
    out = audited["out"]
    # The CLI with the same audit key: the audit's folds and trained runs are found again.
    assert main(["audit", "--data-dir", str(audited["cfg"].data_dir), "--preset", "cpu", "--n-artists", "3",
                 "--folds", str(K), "--recipe", "full", "--audit-key", "test:audit"]) == 0
    printed = capsys.readouterr().out
    assert printed.split()[:5] == ["rank", "filename", "catalog_artist", "p_catalog", "votes_catalog"]
    assert f"audit {out['audit_id']} (test:audit): {out['flagged']} of {out['audited']} paintings flagged" in printed
    with psycopg.connect(audited["url"]) as conn:
        assert conn.execute("SELECT count(*) FROM runs WHERE purpose = 'audit'").fetchone()[0] == K
    assert main(["audit", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(a["id"], a["status"], a["flagged"]) for a in listed] == [(out["audit_id"], "ranked", out["flagged"])]
