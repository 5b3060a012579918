"""The champion at work: scoring the catalog incrementally, nearest-neighbour search on both vector
paths (pgvector index, plain arrays) with the same answers, the named queries and the CLI."""

import contextlib
import json

import numpy as np
import psycopg
import pytest
from psycopg import sql as pgsql

from painting_ml import pipeline
from painting_ml.cli import main
from painting_ml.core import db
from painting_ml.results import attribution
from painting_ml.results.attribution import score_rows
from painting_ml.results.queries import run_query

pytestmark = pytest.mark.train


# --- pure ---------------------------------------------------------------------------------------
def test_score_rows_top_k_label_probability_and_unit_embedding():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    emb = np.array([[3.0, 4.0], [0.0, 0.0]])
    rows = score_rows(probs, emb, ["Ann", "Bo", "Cy"], ["Ann", "Zed"], k=2)
    assert rows[0]["artists"] == ["Bo", "Cy"] and rows[0]["probabilities"] == [0.7, 0.2]
    assert rows[0]["label_probability"] == 0.1 and rows[1]["label_probability"] is None  # Zed: not a class
    assert rows[0]["embedding"] == pytest.approx([0.6, 0.8]) and rows[1]["embedding"] == [0.0, 0.0]
    assert len(score_rows(probs, emb, ["Ann", "Bo", "Cy"], ["Ann", "Bo"], k=10)[0]["artists"]) == 3


# --- both vector paths, on known embeddings -----------------------------------------------------
ARTISTS = ["Ann", "Bo", "Cy", "Dee"]
N, DIMS = 48, 16


def _vector_available(server_url) -> bool:
    with psycopg.connect(server_url) as conn:
        return conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'").fetchone()[0] > 0


@contextlib.contextmanager
def _scored_database(server_url, path: str):
    """A database on one vector path, holding 48 paintings scored by champion run 1 with known
    embeddings and probabilities; dropped afterwards."""
    url = db.create_database(server_url, "pm_vec")
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    if path == "arrays":
        with psycopg.connect(server_url, autocommit=True) as conn:  # what a server without pgvector does
            conn.execute(pgsql.SQL("ALTER DATABASE {} SET painting_ml.vector_search = 'off'")
                         .format(pgsql.Identifier(name)))
    try:
        db.migrate(url)
        rng = np.random.default_rng(3)
        centres = rng.normal(size=(len(ARTISTS), DIMS))
        labels = [ARTISTS[i % len(ARTISTS)] for i in range(N)]
        emb = np.array([centres[i % len(ARTISTS)] + 0.8 * rng.normal(size=DIMS) for i in range(N)])
        probs = rng.dirichlet(np.ones(len(ARTISTS)) * 0.5, size=N)
        with psycopg.connect(url) as conn:
            conn.execute("INSERT INTO dataset_versions (content_hash, config, artists, artist_counts) "
                         "VALUES ('h', '{}', '[]', '{}')")
            conn.execute("INSERT INTO runs (id, run_key, dataset_version_id, config, status, run_dir) "
                         "VALUES (1, 'k1', 1, '{}', 'evaluated', %s)", (f"runs/test_{name}",))
            conn.execute("INSERT INTO champion (run_id) VALUES (1)")
            for i, artist in enumerate(labels):
                conn.execute("INSERT INTO paintings (filename, artist, data_root, rel_path, width, height, mode, "
                             "source_csv) VALUES (%s, %s, '/d', %s, 10, 10, 'RGB', 'c.csv')",
                             (f"{i:03d}.jpg", artist, f"train/{i:03d}.jpg"))
            attribution.write_scores(conn, 1, [{"data_root": "/d", "filename": f"{i:03d}.jpg"} for i in range(N)],
                                     score_rows(probs, emb, ARTISTS, labels, k=3))
        finished = attribution.finish_attribution(1, url)
        yield {"path": path, "url": url, "emb": attribution.unit_rows(emb), "probs": probs, "labels": labels,
               "finished": finished}
    finally:
        db.drop_database(server_url, url)


@pytest.fixture(scope="session")
def vector_server(server_url, painting_home) -> str:
    """A server that has pgvector: the test server when it ships the extension, else the embedded
    pgserver PostgreSQL (which does), so both paths are tested everywhere — CI's server lacks it."""
    if _vector_available(server_url):
        return server_url
    url = db.start_embedded_server(painting_home / "pgvector_pgdata")
    assert _vector_available(url), "the embedded PostgreSQL should ship pgvector"
    return url


@pytest.fixture(scope="module", params=["pgvector", "arrays"])
def vector_db(request, server_url, vector_server, tmp_path_factory):
    server = vector_server if request.param == "pgvector" else server_url
    with _scored_database(server, request.param) as data:
        yield data


def test_the_path_is_what_the_server_offers(vector_db):
    pgvector = vector_db["path"] == "pgvector"
    assert attribution.vector_search_enabled(vector_db["url"]) is pgvector
    finished = vector_db["finished"]
    assert {k: finished[k] for k in ("run_id", "scored", "vector_index", "artists")} == {
        "run_id": 1, "scored": N, "vector_index": pgvector, "artists": len(ARTISTS)}


def test_nearest_is_exact_cosine_order(vector_db):
    emb = vector_db["emb"]
    query = emb[5] + 0.01
    got = attribution.nearest(1, query, k=7, url=vector_db["url"])
    dist = 1 - emb @ (query / np.linalg.norm(query))
    want = np.argsort(dist, kind="stable")[:7]
    assert [r["filename"] for r in got] == [f"{i:03d}.jpg" for i in want]
    assert [r["distance"] for r in got] == pytest.approx(dist[want], abs=1e-5)
    assert got[0]["artist"] == vector_db["labels"][want[0]]


def test_similar_paintings_query_excludes_the_painting_itself(vector_db):
    emb = vector_db["emb"]
    columns, rows = run_query("similar_paintings", {"filename": "010.jpg", "k": "4"}, vector_db["url"])
    assert columns == ["filename", "artist", "distance", "data_root"]
    dist = 1 - emb @ emb[10]
    want = [i for i in np.argsort(dist, kind="stable") if i != 10][:4]
    assert [r[0] for r in rows] == [f"{i:03d}.jpg" for i in want]
    assert [float(r[2]) for r in rows] == pytest.approx(dist[want], abs=1e-4)


def test_artist_neighbours_are_the_closest_centroids(vector_db):
    emb, labels = vector_db["emb"], np.array(vector_db["labels"])
    cent = np.array([emb[labels == a].mean(axis=0) for a in ARTISTS])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    columns, rows = run_query("artist_neighbours", {"artist": "Bo", "k": "2"}, vector_db["url"])
    assert columns == ["artist", "neighbour", "rank", "distance", "paintings", "neighbour_paintings"]
    d = {a: 1 - cent[1] @ cent[i] for i, a in enumerate(ARTISTS) if a != "Bo"}
    want = sorted(d, key=d.get)[:2]
    assert [(r[0], r[1], r[2]) for r in rows] == [("Bo", want[0], 1), ("Bo", want[1], 2)]
    assert float(rows[0][3]) == pytest.approx(d[want[0]], abs=1e-4) and rows[0][4] == N // len(ARTISTS)
    _, every = run_query("artist_neighbours", None, vector_db["url"])
    assert len(every) == len(ARTISTS) * (len(ARTISTS) - 1)  # k=5 > 3 others


def test_possible_misattributions_use_p_and_q(vector_db):
    probs, labels = vector_db["probs"], vector_db["labels"]
    p, q = 0.15, 0.5
    want = []
    for i, label in enumerate(labels):
        li = ARTISTS.index(label)
        top3 = np.argsort(-probs[i], kind="stable")[:3]
        rival = next(j for j in top3 if j != li)
        if probs[i, li] < p and probs[i, rival] > q:
            want.append((f"{i:03d}.jpg", label, ARTISTS[rival]))
    columns, rows = run_query("possible_misattributions", {"p": str(p), "q": str(q)}, vector_db["url"])
    assert columns == ["filename", "catalog_artist", "catalog_artist_probability", "rival_artist",
                       "rival_probability", "data_root", "source"]
    assert {r[-1] for r in rows} == {"champion (in-sample)"}  # no label audit yet
    assert want and sorted((r[0], r[1], r[3]) for r in rows) == sorted(want)
    assert all(float(r[2]) < p and float(r[4]) > q for r in rows)


def test_a_mosaic_per_painting_worth_a_second_look(vector_db):
    _, flagged = run_query("possible_misattributions", None, vector_db["url"])  # p=0.2, q=0.6
    files = attribution.render_second_look_mosaics(1, url=vector_db["url"])
    assert len(files) == len(flagged) == vector_db["finished"]["second_look"] > 0
    assert [f.name.split("_", 1)[1] for f in files] == [f"{r[0].removesuffix('.jpg')}.png" for r in flagged]
    with psycopg.connect(vector_db["url"]) as conn:
        recorded = conn.execute("SELECT count(*) FROM artifacts WHERE kind = 'mosaic_second_look'").fetchone()[0]
    assert recorded == len(files)  # re-rendering replaced the rows, never added to them
    from PIL import Image

    with Image.open(files[0]) as img:  # the painting + up to 4 typical of each artist, in one row
        assert img.height < 200 and img.width > 3 * 96


def test_attributions_query_has_the_catalog_artist_beside_the_top_k(vector_db):
    _, rows = run_query("attributions", {"artist": "Cy", "limit": "500"}, vector_db["url"])
    assert rows and all("Cy" in (r[1], r[2]) for r in rows)
    _, every = run_query("attributions", {"limit": "500"}, vector_db["url"])
    assert len(every) == N and every[0][0] == "000.jpg" and every[0][1] == "Ann"
    assert every[0][5].count(", ") == 2  # top-3


def test_the_vector_path_searches_through_its_hnsw_index(vector_db):
    if vector_db["path"] != "pgvector":  # the arrays path has no index to use
        with psycopg.connect(vector_db["url"]) as conn:
            assert conn.execute("SELECT painting_vector_search()").fetchone()[0] is False
        return
    with psycopg.connect(vector_db["url"]) as conn:
        # 48 rows: the planner would rather sort; at catalog size it picks the index (bench/attribute.py).
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_sort = off")
        # The shape painting_nearest builds: the run filter and the cast to the run's dimension (16).
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT filename FROM attribution_scores WHERE run_id = 1 "
            "ORDER BY embedding_vec::vector(16) <=> %s::vector(16) LIMIT 5",
            (str(vector_db["emb"][0].tolist()),)).fetchall())
        assert "attribution_scores_hnsw_run_1" in plan
        # And with the index forced, the function still returns the exact order.
        got = conn.execute("SELECT filename FROM painting_nearest(1, %s, 5)",
                           (vector_db["emb"][7].tolist(),)).fetchall()
    dist = 1 - vector_db["emb"] @ vector_db["emb"][7]
    assert [r[0] for r in got] == [f"{i:03d}.jpg" for i in np.argsort(dist, kind="stable")[:5]]


def test_both_paths_give_the_same_answers(vector_server, tmp_path):
    server_url = vector_server
    """The same rows in a pgvector database and an array one: every query answers alike."""
    answers = {}
    for path in ("pgvector", "arrays"):
        with _scored_database(server_url, path) as data:
            url = data["url"]
            answers[path] = [
                [(r["filename"], round(r["distance"], 5)) for r in attribution.nearest(1, data["emb"][3], 10, url)],
                run_query("similar_paintings", {"filename": "020.jpg"}, url)[1],
                run_query("artist_neighbours", None, url)[1],
                run_query("possible_misattributions", {"p": "0.3", "q": "0.4"}, url)[1],
            ]
    assert answers["pgvector"] == answers["arrays"]


# --- the real thing: a tiny trained champion scores the catalog -----------------------------------
@pytest.fixture(scope="module")
def champion(evaluated_run, model_db):
    db_url, run_id = model_db, evaluated_run["run_id"]
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO champion (run_id) VALUES (%s)", (run_id,))
        usable = conn.execute("SELECT count(*) FROM paintings WHERE gone_at IS NULL").fetchone()[0]
    return {"run_id": run_id, "usable": usable, "url": db_url}


def test_the_catalog_is_scored_once_and_incrementally(champion):
    run_id, url = champion["run_id"], champion["url"]
    first = attribution.attribute_catalog(url=url)
    assert first["newly_scored"] == champion["usable"] == first["scored"] and first["artists"] == 4  # 3 + test-only
    assert attribution.attribute_catalog(url=url)["newly_scored"] == 0  # a rerun scores nothing twice
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT s.artists, s.probabilities, s.label_probability, s.embedding, p.artist, "
                            "p.artist_group FROM attribution_scores s JOIN paintings p USING (data_root, filename) "
                            "WHERE s.run_id = %s", (run_id,)).fetchall()
        classes = conn.execute("SELECT classes -> 'artist' FROM runs WHERE id = %s", (run_id,)).fetchone()[0]
        # A painting whose catalog row changed is scored again, and only that one.
        conn.execute("UPDATE paintings SET ingested_at = now() WHERE filename = (SELECT min(filename) FROM paintings)")
    for artists, probs, label_p, emb, artist, _ in rows:
        assert len(artists) == 3 and probs == sorted(probs, reverse=True) and set(artists) == set(classes)
        assert (label_p is None) == (artist not in classes)
        assert np.linalg.norm(emb) == pytest.approx(1.0) and len(emb) == 16
    assert attribution.pending_count(run_id, url) == 1
    assert attribution.attribute_catalog(url=url)["newly_scored"] == 1


def test_a_new_champion_rescores_everything(champion):
    url, old = champion["url"], champion["run_id"]
    attribution.attribute_catalog(url=url)
    with psycopg.connect(url) as conn:  # a second run with the same model becomes champion
        new = conn.execute("INSERT INTO runs (run_key, dataset_version_id, config, status, run_dir, model_path, "
                           "classes) SELECT 'test:attribution:2', dataset_version_id, config, status, run_dir, "
                           "model_path, classes "
                           "FROM runs WHERE id = %s RETURNING id", (old,)).fetchone()[0]
        conn.execute("UPDATE champion SET run_id = %s", (new,))
    try:
        plan = pipeline.plan_attribution_step(new)
        assert plan == {"run_id": new, "pending": champion["usable"], "shards": 1}
        # The DAG's way: shards, then finish.
        assert sum(pipeline.attribute_shard_step(new, s, 3)["scored"] for s in range(3)) == champion["usable"]
        assert pipeline.finish_attribution_step(new)["scored"] == champion["usable"]
        assert pipeline.plan_attribution_step(new)["shards"] == 0
        with psycopg.connect(url) as conn:  # same model, same answers
            diff = conn.execute("SELECT max(abs(a.label_probability - b.label_probability)) FROM attribution_scores a "
                                "JOIN attribution_scores b USING (data_root, filename) "
                                "WHERE a.run_id = %s AND b.run_id = %s", (old, new)).fetchone()[0]
        assert diff < 1e-5
    finally:
        with psycopg.connect(url) as conn:
            conn.execute("UPDATE champion SET run_id = %s", (old,))


def test_similar_cli_puts_the_image_itself_first(champion, capsys):
    attribution.attribute_catalog(url=champion["url"])
    with psycopg.connect(champion["url"]) as conn:
        filename, path = conn.execute("SELECT filename, data_root || '/' || rel_path FROM paintings "
                                      "ORDER BY filename LIMIT 1 OFFSET 5").fetchone()
    assert main(["similar", path, "-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == champion["run_id"] and len(out["neighbours"]) == 3
    first = out["neighbours"][0]
    assert first["filename"] == filename and first["distance"] == pytest.approx(0, abs=1e-4)
    assert main(["similar", path, "-k", "2"]) == 0
    assert filename in capsys.readouterr().out


def test_attributions_cli(champion, capsys):
    attribution.attribute_catalog(url=champion["url"])
    assert main(["attributions", "--misattributed", "-p", "1", "-q", "0", "--json", "--limit", "1000"]) == 0
    flagged = json.loads(capsys.readouterr().out)
    with psycopg.connect(champion["url"]) as conn:
        labelled = conn.execute("SELECT count(*) FROM attribution_scores WHERE run_id = %s "
                                "AND label_probability < 1", (champion["run_id"],)).fetchone()[0]
    assert len(flagged) == labelled > 0  # p = 1, q = 0: every labelled painting not certain of its label
    assert main(["attributions", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == champion["usable"]
    assert main(["sql", "possible_misattributions"]) == 0
    assert capsys.readouterr().out.split()[:2] == ["filename", "catalog_artist"]


def test_the_dag_parses_without_a_database_and_wires_the_gpu_shards(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(repo / "dags"), PAINTING_DB_URL="postgresql://nobody@127.0.0.1:1/none")
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(repo / 'dags' / 'painting_attribute.py')!r})\n"
        "d = bag.dags['painting_attribute']\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},\n"
        "  'upstream': {t.task_id: sorted(t.upstream_task_ids) for t in d.tasks},\n"
        "  'queues': {t.task_id: t.queue for t in d.tasks}, 'pools': {t.task_id: t.pool for t in d.tasks},\n"
        "  'assets': sorted(a.name for a in d.timetable.asset_condition.objects),\n"
        "  'tf': 'tensorflow' in sys.modules}))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["errors"] == {} and got["tf"] is False
    assert got["assets"] == ["painting_catalog", "painting_champion"]
    assert got["upstream"] == {"migrate": [], "export_champion": ["migrate"], "plan": ["export_champion"],
                               "score": ["plan"], "finish": ["export_champion", "score"]}
    assert got["queues"]["score"] == "gpu" and got["pools"]["score"] == "gpu"
