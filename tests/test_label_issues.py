"""cleanlab's ranking of label issues: planted flips in out-of-fold probabilities are found; the
stored ranking is idempotent; possible_misattributions reads the latest ranked audit (and says so),
leaves out what a curator settled, and falls back to the champion's in-sample list before any audit."""

import json

import numpy as np
import psycopg
import pytest

from painting_ml.results.label_issues import find_issues, rank_label_issues, top_issues
from painting_ml.results.queries import run_query

pytestmark = pytest.mark.unit

ARTISTS = ["Ann", "Bo", "Cy", "Di"]


def _oof(n_per=40, flips=8, seed=0):
    """Out-of-fold-like probabilities: each painting's true artist is probable (noisy), and
    ``flips`` labels are changed to another artist afterwards (the model never learnt them)."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(len(ARTISTS)), n_per)
    logits = rng.normal(0, 1, (len(true), len(ARTISTS)))
    logits[np.arange(len(true)), true] += 6.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = true.copy()
    flipped = rng.choice(len(true), flips, replace=False)
    labels[flipped] = (true[flipped] + rng.integers(1, len(ARTISTS), flips)) % len(ARTISTS)
    return labels, probs, true, set(flipped.tolist())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cleanlab_finds_the_planted_flips_first(seed):
    labels, probs, true, flipped = _oof(seed=seed)
    ranked, quality, suggested = find_issues(labels, probs)
    found = set(ranked.tolist())
    recall = len(found & flipped) / len(flipped)
    precision = len(found & flipped) / max(1, len(found))
    # Confident learning flags conservatively (its per-class thresholds are the mean self-confidence,
    # which a flip of near-certain probabilities can miss) but what it flags is right...
    assert recall >= 0.6 and precision >= 0.9, (recall, precision)
    assert set(ranked[:4].tolist()) <= flipped
    # ...and the label-quality score ranks every flip first (the list a curator works down).
    assert set(np.argsort(quality, kind="stable")[:len(flipped)].tolist()) == flipped
    # The suggestion is the artist the painting really is by.
    assert all(suggested[i] == true[i] for i in found & flipped)
    assert quality.shape == (len(labels),) and quality[list(flipped)].mean() < np.delete(quality, list(flipped)).mean()
    assert np.allclose(quality, probs[np.arange(len(labels)), labels])  # self-confidence


def test_a_clean_catalog_flags_little():
    labels, probs, _, _ = _oof(flips=0, seed=4)
    ranked, _, _ = find_issues(labels, probs)
    assert len(ranked) <= 0.05 * len(labels)


def test_with_neighbour_votes_cleanlab_judges_the_votes_and_the_probabilities_break_ties():
    from cleanlab.filter import find_label_issues

    labels, probs, true, flipped = _oof(seed=5)
    # Fitted-model probabilities: every painting near-certain of its true artist, so each artist's
    # threshold sits near 1 and confident learning on them misses the flips it plainly disputes.
    sharp = np.full_like(probs, 1e-4)
    sharp[np.arange(len(true)), true] = 1.0
    sharp[list(flipped), true[list(flipped)]] = 0.9  # disputed, but below the ~0.9997 threshold
    sharp[list(flipped), labels[list(flipped)]] = 0.1
    # Vote shares (k=5) that do not saturate: most paintings 4 or 5 of 5 votes for their artist.
    rng = np.random.default_rng(5)
    votes = np.zeros_like(probs)
    mine = rng.choice([0.6, 0.8, 1.0], len(true), p=[0.2, 0.4, 0.4])
    mine[list(flipped)] = 1.0  # a flip sits among its true artist's paintings
    votes[np.arange(len(true)), true] = mine
    votes[np.arange(len(true)), (true + 1) % len(ARTISTS)] += 1.0 - mine
    ranked_sharp, _, _ = find_issues(labels, sharp)
    ranked, quality, suggested = find_issues(labels, sharp, votes)
    assert len(set(ranked_sharp.tolist()) & flipped) < len(flipped)
    assert set(ranked.tolist()) >= flipped  # every flip, on the votes
    expected = np.flatnonzero(find_label_issues(labels, votes / votes.sum(1, keepdims=True) + 0,
                                                filter_by="confident_learning"))
    assert sorted(ranked.tolist()) == sorted(expected.tolist())
    assert np.allclose(quality, votes[np.arange(len(labels)), labels], atol=1e-6)  # the label's vote share
    # Flagged in order of vote share, equal shares by the label's probability.
    keys = [(round(quality[i], 6), sharp[i, labels[i]]) for i in ranked]
    assert keys == sorted(keys)
    assert all(suggested[i] == true[i] for i in flipped)
    # Two artists with equal votes: the more probable is suggested.
    tie_votes = np.array([[0.2, 0.4, 0.4, 0.0]])
    tie_probs = np.array([[0.1, 0.3, 0.5, 0.1]])
    assert find_issues(np.array([0]), tie_probs, tie_votes)[2].tolist() == [2]


# --- stored: an audit with known out-of-fold rows -------------------------------------------------
def _audit_rows(url, labels, probs, root="/d"):
    files = [f"{i:03d}.jpg" for i in range(len(labels))]
    with psycopg.connect(url) as conn:
        for f, a in zip(files, labels, strict=True):
            conn.execute("INSERT INTO paintings (filename, artist, data_root, rel_path, width, height, mode, "
                         "source_csv, sha256) VALUES (%s, %s, %s, %s, 8, 8, 'RGB', 'all_data_info.csv', %s)",
                         (f, ARTISTS[a], root, f"train/{f}", f"sha-{f}"))
        version = conn.execute(
            "INSERT INTO dataset_versions (content_hash, config, artists, artist_counts, data_root) "
            "VALUES ('audit-set', %s, %s, '{}', %s) RETURNING id",
            (json.dumps({"audit": {"folds": 2, "set": "audited"}}), json.dumps(ARTISTS), root)).fetchone()[0]
        audit = conn.execute("INSERT INTO audits (audit_key, dataset_version_id, data_root, folds, recipe, config) "
                             "VALUES ('t:1', %s, %s, 2, 'full', '{}') RETURNING id", (version, root)).fetchone()[0]
        for fold in (0, 1):
            conn.execute("INSERT INTO audit_folds (audit_id, fold, dataset_version_id, predicted_at) "
                         "VALUES (%s, %s, %s, now())", (audit, fold, version))
        for i, f in enumerate(files):
            conn.execute("INSERT INTO audit_predictions (audit_id, data_root, filename, fold, artist, probabilities, "
                         "embedding, sha256) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                         (audit, root, f, i % 2, ARTISTS[labels[i]], probs[i].tolist(), [1.0, 0.0], f"sha-{f}"))
    return audit, files


def _champion_doubting(url, filename, catalog, rival):
    """A champion run whose in-sample scores doubt one painting."""
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO runs (id, run_key, dataset_version_id, config, status, run_dir) "
                     "VALUES (1, 'k1', (SELECT min(id) FROM dataset_versions), '{}', 'evaluated', '/r')")
        conn.execute("INSERT INTO champion (run_id) VALUES (1)")
        conn.execute("INSERT INTO attribution_scores (run_id, data_root, filename, artists, probabilities, "
                     "label_probability, embedding) VALUES (1, '/d', %s, %s, '{0.9, 0.05}', 0.05, '{1, 0}')",
                     (filename, [rival, catalog]))


@pytest.mark.db
def test_stored_ranking_is_idempotent_and_feeds_possible_misattributions(clean_db):
    labels, probs, true, flipped = _oof(n_per=20, flips=5, seed=3)
    audit, files = _audit_rows(clean_db, labels, probs)
    # Before any ranked audit: the champion's in-sample list, and it says so.
    _champion_doubting(clean_db, files[0], ARTISTS[labels[0]], ARTISTS[(labels[0] + 1) % 4])
    columns, rows = run_query("possible_misattributions", None, clean_db)
    assert columns[-1] == "source" and [(r[0], r[-1]) for r in rows] == [(files[0], "champion (in-sample)")]

    first = rank_label_issues(audit, clean_db)
    with psycopg.connect(clean_db) as conn:
        stored = conn.execute("SELECT filename, catalog_artist, suggested_artist, quality, is_issue, rank "
                              "FROM label_issues WHERE audit_id = %s ORDER BY filename", (audit,)).fetchall()
        status, summary = conn.execute("SELECT status, summary FROM audits WHERE id = %s", (audit,)).fetchone()
    assert len(stored) == len(files)  # every audited painting has its verdict
    flagged = sorted((r[5], r[0]) for r in stored if r[4])
    assert [rank for rank, _ in flagged] == list(range(1, len(flagged) + 1)) and first["flagged"] == len(flagged)
    assert all(r[5] is None for r in stored if not r[4])
    assert {files[i] for i in flipped} & {f for _, f in flagged}
    assert status == "ranked" and summary["audited"] == len(files) and summary["cleanlab"]["filter_by"] == \
        "confident_learning"

    assert rank_label_issues(audit, clean_db)["flagged"] == first["flagged"]  # again: the same rows
    with psycopg.connect(clean_db) as conn:
        again = conn.execute("SELECT filename, catalog_artist, suggested_artist, quality, is_issue, rank "
                             "FROM label_issues WHERE audit_id = %s ORDER BY filename", (audit,)).fetchall()
    assert again == stored

    # Now the audit's flagged paintings, by rank, with the out-of-fold probabilities of both artists.
    columns, rows = run_query("possible_misattributions", None, clean_db)
    assert [r[0] for r in rows] == [f for _, f in flagged]
    assert {r[-1] for r in rows} == {f"audit {audit} (out-of-fold)"}
    top = top_issues(audit, 3, clean_db)
    assert [t["filename"] for t in top] == [f for _, f in flagged[:3]]
    assert all(t["catalog_votes"] is None for t in top)  # an audit without neighbour votes
    i = files.index(rows[0][0])
    assert float(rows[0][2]) == pytest.approx(probs[i, labels[i]], abs=1e-3)
    assert float(rows[0][4]) == pytest.approx(probs[i, ARTISTS.index(rows[0][3])], abs=1e-3)
    # An explicit run_id still asks that run (in-sample).
    _, by_run = run_query("possible_misattributions", {"run_id": "1"}, clean_db)
    assert [r[-1] for r in by_run] == ["run 1 (in-sample)"]

    # A curator's keep settles a painting: it leaves the list (an 'unsure' would not).
    settled = rows[0][0]
    with psycopg.connect(clean_db) as conn:
        conn.execute("INSERT INTO label_reviews (data_root, filename, decision, catalog_artist, reviewer, sha256) "
                     "VALUES ('/d', %s, 'keep', %s, 'alice', %s)", (settled, rows[0][1], f"sha-{settled}"))
    _, after = run_query("possible_misattributions", None, clean_db)
    assert [r[0] for r in after] == [r[0] for r in rows[1:]]


@pytest.mark.db
def test_an_audit_with_neighbour_votes_is_ranked_on_them(clean_db):
    labels, probs, true, flipped = _oof(n_per=20, flips=5, seed=3)
    audit, files = _audit_rows(clean_db, labels, probs)
    votes = np.zeros_like(probs)
    votes[np.arange(len(true)), true] = 1.0
    with psycopg.connect(clean_db) as conn:
        for f, v in zip(files, votes, strict=True):
            conn.execute("UPDATE audit_predictions SET neighbour_votes = %s WHERE audit_id = %s AND filename = %s",
                         (v.tolist(), audit, f))
    summary = rank_label_issues(audit, clean_db)
    with psycopg.connect(clean_db) as conn:
        flagged = {r[0]: r[1] for r in conn.execute(
            "SELECT filename, suggested_artist FROM label_issues WHERE audit_id = %s AND is_issue", (audit,))}
    assert summary["cleanlab"]["judged"] == "neighbour_votes"
    assert set(flagged) == {files[i] for i in flipped}  # every vote against the label, nothing else
    assert all(flagged[files[i]] == ARTISTS[true[i]] for i in flipped)
    # The list a curator reads shows both artists' shares of the votes.
    top = top_issues(audit, 10, clean_db)
    assert [(t["catalog_votes"], t["suggested_votes"]) for t in top] == [(0.0, 1.0)] * len(flipped)
    # One row without votes (an audit from before them): the probabilities are judged, for every row.
    with psycopg.connect(clean_db) as conn:
        conn.execute("UPDATE audit_predictions SET neighbour_votes = NULL WHERE audit_id = %s AND filename = %s",
                     (audit, files[0]))
    assert rank_label_issues(audit, clean_db)["cleanlab"]["judged"] == "probabilities"


@pytest.mark.db
def test_a_failed_audit_run_again_is_running_and_no_longer_finished(clean_db):
    from psycopg.types.json import Jsonb

    from painting_ml.core import db

    labels, probs, _, _ = _oof(n_per=4, flips=0, seed=1)
    audit, _ = _audit_rows(clean_db, labels, probs)
    with db.connect(clean_db) as conn:
        conn.execute(db.sql("audit", "fail_audit"), {"id": audit, "summary": Jsonb({"error": "killed"})})
        row = conn.execute("SELECT dataset_version_id, data_root FROM audits WHERE id = %s", (audit,)).fetchone()
        again = {"key": "t:1", "version": row["dataset_version_id"], "root": row["data_root"], "folds": 2,
                 "recipe": "full", "config": Jsonb({})}
        assert db.fetch_one(conn, db.sql("audit", "upsert_audit"), again)["id"] == audit
        status, finished, summary = conn.execute("SELECT status, finished_at, summary FROM audits WHERE id = %s",
                                                 (audit,)).fetchone().values()
    assert (status, finished, summary) == ("running", None, None)
