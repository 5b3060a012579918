"""The curator's evidence for an audit's flagged paintings, on an audit built by hand around the shared
tiny run (it stands as every fold's model): exemplars are the nearest paintings labelled with the
artist (never the painting, its duplicate group or another flagged painting), heatmap PNGs in the
store, the evidence JSON, an idempotent rerun, and the HTML report with names escaped."""

import numpy as np
import psycopg
import pytest
from PIL import Image
from psycopg.types.json import Jsonb

from painting_ml.results.evidence import Candidate, nearest_exemplars
from tests.conftest import stored

pytestmark = pytest.mark.train

EVIL = "<b>Evil</b> & Co"


# --- pure ---------------------------------------------------------------------------------------
@pytest.mark.unit
def test_nearest_exemplars_rank_by_cosine_and_skip_the_painting_and_its_copies():
    cands = [Candidate("r", f, g) for f, g in [("me.jpg", "g1"), ("copy.jpg", "g1"), ("a.jpg", None),
                                               ("b.jpg", "g2"), ("c.jpg", None), ("other_root.jpg", "g1")]]
    emb = np.array([[1, 0], [1, 0.01], [1, 0.5], [0.2, 1], [0, 1], [1, 0.1]])
    cands[5] = Candidate("elsewhere", "other_root.jpg", "g1")  # same key, another folder: not a copy
    got = nearest_exemplars([2.0, 0.0], emb, cands, 3, ("r", "me.jpg"), "g1")
    assert [c.filename for c, _ in got] == ["other_root.jpg", "a.jpg", "b.jpg"]
    assert got[0][1] == pytest.approx(1 / np.hypot(1, 0.1)) and got[1][1] > got[2][1]
    assert [c.filename for c, _ in nearest_exemplars([1, 0], emb, cands, 10, ("r", "x.jpg"))][:2] == ["me.jpg",
                                                                                                     "copy.jpg"]
    assert nearest_exemplars([1, 0], emb[:0], [], 3, ("r", "me.jpg")) == []


# --- an audit by hand ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audit(model_db, evaluated_run):
    """Audit 1 of the shared run's paintings: two "folds" both served by the shared run, out-of-fold
    rows from its own inference, three flagged paintings (one with a copy in its suggested artist)."""
    from painting_ml.data.derived import cached_paths, long_side_for
    from painting_ml.data.versions import UNSEEN, load_items
    from painting_ml.learn.inference import infer, load_run_model
    from painting_ml.results.attribution import unit_rows

    run_id = evaluated_run["run_id"]
    rm = load_run_model(run_id, model_db)
    _, items = load_items(rm.version_id, model_db)
    items = [i for i in items if i.split != UNSEEN]
    out = infer(rm, cached_paths(items, long_side_for(int(rm.config["image_size"])), model_db))
    emb = unit_rows(out["embedding"])
    names = rm.classes["artist"]
    root = items[0].data_root
    labels = [i.artist for i in items]
    # Flag one painting of each artist, suggesting the next artist.
    flagged = [next(n for n, i in enumerate(items) if i.artist == a) for a in names]
    suggested = {n: names[(names.index(labels[n]) + 1) % len(names)] for n in flagged}
    # The first flagged painting's nearest painting of its suggested artist becomes its copy.
    first = flagged[0]
    same = [n for n in range(len(items)) if labels[n] == suggested[first] and n not in flagged]
    copy = max(same, key=lambda n: float(emb[n] @ emb[first]))
    with psycopg.connect(model_db) as conn:
        audit_id = conn.execute(
            "INSERT INTO audits (audit_key, dataset_version_id, data_root, folds, recipe, config, status, summary) "
            "VALUES ('test:evidence', %s, %s, 2, 'head', %s, 'ranked', %s) RETURNING id",
            (rm.version_id, root, Jsonb(rm.config), Jsonb({"cleanlab": {"filter_by": "prune_by_noise_rate"}})),
        ).fetchone()[0]
        for fold in (0, 1):
            conn.execute("INSERT INTO audit_folds (audit_id, fold, dataset_version_id, run_id) VALUES (%s, %s, %s, %s)",
                         (audit_id, fold, rm.version_id, run_id))
        for n, item in enumerate(items):
            conn.execute("INSERT INTO audit_predictions (audit_id, data_root, filename, fold, artist, probabilities, "
                         "embedding) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         (audit_id, root, item.filename, n % 2, item.artist, out["artist"][n].tolist(),
                          emb[n].tolist()))
            rank = flagged.index(n) + 1 if n in flagged else None
            conn.execute("INSERT INTO label_issues (audit_id, data_root, filename, catalog_artist, suggested_artist, "
                         "quality, is_issue, rank) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                         (audit_id, root, item.filename, item.artist, suggested.get(n, item.artist),
                          0.01 * rank if rank else 0.9, rank is not None, rank))
        for n in (first, copy):
            conn.execute("INSERT INTO painting_groups (data_root, filename, group_key) VALUES (%s, %s, %s)",
                         (root, items[n].filename, items[first].filename))
    yield {"id": audit_id, "items": items, "emb": emb, "labels": labels, "flagged": flagged, "suggested": suggested,
           "copy": copy, "root": root, "url": model_db}
    from painting_ml.core.store import get_store

    with psycopg.connect(model_db) as conn:
        conn.execute("DELETE FROM painting_groups WHERE data_root = %s AND filename = ANY(%s)",
                     (root, [items[first].filename, items[copy].filename]))
        conn.execute("DELETE FROM audits WHERE id = %s", (audit_id,))
    get_store().delete_prefix(f"audits/{audit_id}")


def _evidence(url, audit_id):
    with psycopg.connect(url) as conn:
        return {r[0]: r[1] for r in conn.execute(
            "SELECT filename, evidence FROM label_issues WHERE audit_id = %s AND evidence IS NOT NULL", (audit_id,))}


def _files(audit_id):
    from painting_ml.core.store import get_store

    return get_store().list(f"audits/{audit_id}/evidence")


def test_evidence_exemplars_are_the_nearest_of_each_artist(audit):
    from painting_ml.results.evidence import EXEMPLARS, render_evidence

    got = render_evidence(audit["id"], url=audit["url"])
    assert got["issues"] == 3 and got["heatmaps"] == 6 and got["prefix"] == f"audits/{audit['id']}/evidence"
    evidence = _evidence(audit["url"], audit["id"])
    items, emb, labels = audit["items"], audit["emb"], audit["labels"]
    flagged_names = {items[n].filename for n in audit["flagged"]}
    assert set(evidence) == flagged_names
    for n in audit["flagged"]:
        ev = evidence[items[n].filename]
        assert ev["run_id"] is not None and ev["fold"] == n % 2
        assert Image.open(stored(ev["painting"])).mode == "RGB"
        for side, artist in (("catalog", labels[n]), ("suggested", audit["suggested"][n])):
            part = ev[side]
            assert part["artist"] == artist and 0.0 <= part["probability"] <= 1.0
            # Brute force: cosine to every painting labelled `artist` that is not flagged, not in its group.
            group = {items[n].filename} | ({items[audit["copy"]].filename} if n == audit["flagged"][0] else set())
            pool = [m for m in range(len(items)) if labels[m] == artist and items[m].filename not in flagged_names
                    and items[m].filename not in group]
            sims = sorted(((float(emb[m] @ emb[n]), items[m].filename) for m in pool), key=lambda t: -t[0])
            want = sims[:EXEMPLARS]
            assert [e["filename"] for e in part["exemplars"]] == [f for _, f in want]
            assert [e["similarity"] for e in part["exemplars"]] == pytest.approx([s for s, _ in want], abs=1e-4)
            assert {e["filename"] for e in part["exemplars"]}.isdisjoint(group | flagged_names)
            for e in part["exemplars"]:
                assert e["key"].startswith(f"audits/{audit['id']}/evidence/exemplars/") and stored(e["key"]).is_file()
            heat = Image.open(stored(part["heatmap"]))
            assert heat.mode == "RGB" and max(heat.size) == 224
    # The copy would have been the first flagged painting's nearest suggested exemplar.
    assert items[audit["copy"]].filename not in {e["filename"] for e in
                                                 evidence[items[audit["flagged"][0]].filename]["suggested"]["exemplars"]}


def test_rerun_is_idempotent_and_a_shorter_list_drops_the_rest(audit):
    from painting_ml.results.evidence import audit_files, render_evidence

    render_evidence(audit["id"], url=audit["url"])
    before, files = _evidence(audit["url"], audit["id"]), _files(audit["id"])
    render_evidence(audit["id"], url=audit["url"])
    assert _evidence(audit["url"], audit["id"]) == before and _files(audit["id"]).keys() == files.keys()
    listed = {f["path"]: f for f in audit_files(audit["id"], audit["url"])}
    assert set(listed) == set(files) and all(listed[k]["bytes"] == files[k] for k in files)

    top = render_evidence(audit["id"], limit=1, url=audit["url"])
    evidence = _evidence(audit["url"], audit["id"])
    assert top["issues"] == 1 and list(evidence) == [audit["items"][audit["flagged"][0]].filename]
    keys = {evidence[k]["painting"] for k in evidence} | {e["key"] for v in evidence.values()
                                                          for s in ("catalog", "suggested") for e in v[s]["exemplars"]}
    keys |= {v[s]["heatmap"] for v in evidence.values() for s in ("catalog", "suggested")}
    assert set(_files(audit["id"])) == keys  # the other paintings' files are gone, and their rows
    assert {f["path"] for f in audit_files(audit["id"], audit["url"])} == keys
    render_evidence(audit["id"], url=audit["url"])


def test_report_shows_every_issue_with_its_evidence_and_escapes_names(audit):
    from painting_ml.results.evidence import render_audit_report, render_evidence

    render_evidence(audit["id"], limit=2, url=audit["url"])
    items, n = audit["items"], audit["flagged"][1]
    with psycopg.connect(audit["url"]) as conn:
        conn.execute("UPDATE label_issues SET suggested_artist = %s, evidence = jsonb_set(evidence, "
                     "'{suggested,artist}', to_jsonb(%s::text)) WHERE audit_id = %s AND filename = %s",
                     (EVIL, EVIL, audit["id"], items[n].filename))
    try:
        key = render_audit_report(audit["id"], url=audit["url"])
        assert key == f"audits/{audit['id']}/report.html"
        page = stored(key).read_text()
    finally:
        with psycopg.connect(audit["url"]) as conn:
            conn.execute("UPDATE label_issues SET suggested_artist = %s WHERE audit_id = %s AND filename = %s",
                         (audit["suggested"][n], audit["id"], items[n].filename))
        render_evidence(audit["id"], url=audit["url"])  # and its evidence
    assert EVIL not in page and "&lt;b&gt;Evil&lt;/b&gt; &amp; Co" in page
    assert "Label audit" in page and "paintings audited" in page and "prune_by_noise_rate" in page
    for m in audit["flagged"][:2]:  # with evidence: relative links to files that exist beside the report
        assert f"#{audit['flagged'].index(m) + 1} {items[m].filename}" in page
    base = stored(key).parent
    links = [s.split('"')[0] for s in page.split('src="')[1:]]
    assert links and all(not link.startswith(("/", "audits/")) and (base / link).is_file() for link in links)
    assert items[audit["flagged"][2]].filename in page  # past the rendered ones: listed in the table
    with psycopg.connect(audit["url"]) as conn:
        kinds = dict(conn.execute("SELECT path, kind FROM audit_artifacts WHERE audit_id = %s",
                                  (audit["id"],)).fetchall())
    assert kinds[key] == "audit_report"


def test_unknown_audit_is_one_line(model_db):
    from painting_ml.core.errors import PaintingMLError
    from painting_ml.results.evidence import render_audit_report, render_evidence

    with pytest.raises(PaintingMLError, match="audit 999 does not exist"):
        render_evidence(999, url=model_db)
    with pytest.raises(PaintingMLError, match="audit 999 does not exist"):
        render_audit_report(999, url=model_db)
