"""Attribution benchmark: scoring throughput of the champion over generated paintings, and
nearest-neighbour latency over 10,000 and 100,000 stored embeddings, pgvector HNSW index vs the
plain-array fallback, side by side.

1. Scoring: N generated paintings are ingested into a scratch database and scored by a model of
   the production shape (untrained weights: speed does not depend on them) through the library
   path the DAG's mapped task runs (``score_shard``: model load, decode, infer, top-k, COPY) and
   through the serving export (``tf.saved_model.load``, then its endpoint: file bytes in,
   probabilities and embedding out; no top-k, no writes). Each round times both, in alternating
   order: cold (from the model load on, as a shard task runs) and then warm (the same loaded
   model again: no load, no tracing). Warm gives the cost per painting, cold minus warm the fixed
   cost per shard (load, tracing, first-call set-up); the medians of the rounds are printed and
   extrapolated to 10,000 paintings in shards of ``SHARD_SIZE``.
2. Search: random unit embeddings (dimension of the head, 256 by default) are stored for a run in
   two scratch databases, one with pgvector (HNSW index per run) and one forced onto the array
   path; the same queries (k=10) are timed on both, and the index's recall@10 against the exact
   answer is reported.

    env -u PAINTING_DB_URL .venv/bin/python bench/attribute.py [--images 160] [--rounds 3] [--sizes 10000,100000]

The embedded pgserver PostgreSQL ships pgvector; a server without it runs the array side only.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from _common import machine, painting_jpegs

ROOT = "/bench/catalog"


@contextlib.contextmanager
def scratch(vector: bool):
    """A migrated scratch database on the pgvector path (``vector``) or forced onto arrays."""
    import psycopg
    from psycopg import sql as pgsql

    from painting_ml.core import db
    from painting_ml.core.settings import get_settings

    base = db.resolve_url(get_settings())
    url = db.create_database(base, "pm_bench_attr")
    try:
        if not vector:
            with psycopg.connect(base, autocommit=True) as conn:
                name = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
                conn.execute(pgsql.SQL("ALTER DATABASE {} SET painting_ml.vector_search = 'off'")
                             .format(pgsql.Identifier(name)))
        db.migrate(url)
        yield url
    finally:
        db.drop_database(base, url)


def catalog_row(filename: str, artist: str, root: str, width: int, height: int):
    """One usable catalog row of an image file ``filename`` directly under ``root`` (the fields
    not given here empty)."""
    from painting_ml.data.ingest import CatalogRow

    given = {"filename": filename, "artist": artist, "in_train": True, "data_root": root, "rel_path": filename,
             "width": width, "height": height, "mode": "RGB", "source_csv": "bench.csv"}
    return CatalogRow._make(given.get(field) for field in CatalogRow._fields)


def catalog_rows(paths: list[str]) -> list:
    """Catalog rows for image files of one folder (the data root)."""
    return [catalog_row(Path(p).name, f"Artist {i % 8}", str(Path(p).parent), 256, 192) for i, p in enumerate(paths)]


def fake_run(conn, model_path: str, run_dir: str, classes: list[str], image_size: int, batch: int) -> int:
    """A runs row pointing at ``model_path`` (what training would have written)."""
    import json

    conn.execute("INSERT INTO dataset_versions (content_hash, config, artists, artist_counts) "
                 "VALUES ('bench', '{}', %s, '{}') ON CONFLICT DO NOTHING", (json.dumps(classes),))
    return conn.execute(
        "INSERT INTO runs (run_key, dataset_version_id, config, status, run_dir, model_path, classes) "
        "VALUES (%s, (SELECT id FROM dataset_versions WHERE content_hash = 'bench'), %s, 'evaluated', %s, %s, %s) "
        "RETURNING id",
        (f"bench:{time.time()}", json.dumps({"image_size": image_size, "batch_size": batch, "resize_mode": "crop"}),
         run_dir, model_path, json.dumps({"artist": classes}))).fetchone()["id"]


def bench_scoring(args) -> None:
    import shutil

    from painting_ml.core.artifacts import run_folder

    run_dir = f"bench-attribute-{time.time_ns()}"  # a run folder in the artifact store, removed after
    try:
        _bench_scoring(args, run_dir)
    finally:
        shutil.rmtree(run_folder(run_dir), ignore_errors=True)


def _bench_scoring(args, run_dir: str) -> None:
    from painting_ml.core import db
    from painting_ml.core.artifacts import run_folder
    from painting_ml.core.config import CPU_DEMO, RunConfig
    from painting_ml.data import ingest as catalog
    from painting_ml.learn.export import export_serving_model
    from painting_ml.learn.models import create_model
    from painting_ml.results.attribution import SHARD_SIZE

    paths = painting_jpegs(Path(tempfile.gettempdir()) / "bench_attribute_images", args.images, 256, 192)
    classes = [f"Artist {i}" for i in range(args.classes)]
    cfg = RunConfig(**{**CPU_DEMO, "data_dir": tempfile.gettempdir(), "backbone": args.backbone,
                       "image_size": args.image_size, "weights": None, "head_units": args.dims,
                       "online_augment": False, "wandb": False})
    model = create_model(cfg, len(classes))
    model.save(run_folder(run_dir) / "model.keras")
    print(f"scoring {args.images} generated 256x192 paintings: {args.backbone} at {args.image_size} px, "
          f"{args.classes} artists, embedding {args.dims}, batches of {args.batch}; {machine()}", flush=True)
    with scratch(vector=False) as url:
        with db.connect(url) as conn:
            catalog.load_rows(conn, catalog_rows(paths), [], "bench.csv", str(Path(paths[0]).parent))
            run_id = fake_run(conn, f"{run_dir}/model.keras", run_dir, classes, args.image_size, args.batch)
        export = export_serving_model(run_id, url)["path"]
        took: dict[str, list[list[Took]]] = {"library": [], "export": []}
        for r in range(args.rounds):
            for side in (("library", "export") if r % 2 == 0 else ("export", "library")):
                passes = (time_library(run_id, len(paths), url) if side == "library"
                          else time_export(export, paths, args.batch))
                took[side].append(passes)
                (cold, warm), n = passes, len(paths)
                print(f"  round {r + 1} {side:7}: cold {n / cold.wall:5.2f} img/s ({cold.wall:5.1f} s, CPU "
                      f"{cold.cpu:5.1f} s), warm {n / warm.wall:5.2f} img/s ({warm.wall:5.1f} s, CPU "
                      f"{warm.cpu:5.1f} s)", flush=True)
    summarise(took, len(paths), args.rounds, SHARD_SIZE)


class Took(NamedTuple):
    """One timed pass: wall seconds, and CPU seconds of this process (all its threads). With
    other work on the machine, CPU seconds measure the work; wall seconds also the waiting."""

    wall: float
    cpu: float


@contextlib.contextmanager
def clock(out: list[Took]) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    out.append(Took(time.perf_counter() - wall, time.process_time() - cpu))


def summarise(took: dict[str, list[list[Took]]], n: int, rounds: int, shard_size: int) -> None:
    """Medians over the rounds (cold: pass 0, warm: pass 1), the fixed cost per shard (cold minus
    warm) and the cost of 10,000 paintings extrapolated from them, library beside export."""
    def median(side: str, i: int, clock: str) -> float:
        return statistics.median(getattr(r[i], clock) for r in took[side])

    shards = -(-10_000 // shard_size)
    fixed = {(side, c): max(0.0, median(side, 0, c) - median(side, 1, c)) for side in took for c in ("wall", "cpu")}
    per_10k = {(side, c): (shards * fixed[side, c] + 10_000 * median(side, 1, c) / n) / 60
               for side in took for c in ("wall", "cpu")}
    print(f"median of {rounds} rounds:", flush=True)
    for side, label in (("library", "library path (score_shard: load, decode, infer, top-k, COPY)"),
                        ("export", "serving export (load, file bytes in, scores out)          ")):
        print(f"  {label} cold {n / median(side, 0, 'wall'):5.2f} img/s, warm {n / median(side, 1, 'wall'):5.2f} "
              f"img/s, warm CPU {median(side, 1, 'cpu') / n:.3f} s per painting; fixed per shard "
              f"{fixed[side, 'wall']:4.1f} s ({fixed[side, 'cpu']:4.1f} s CPU)", flush=True)
    print(f"10,000 paintings, extrapolated ({shards} shards of {shard_size}: the fixed cost each, plus the warm cost "
          f"per painting): library {per_10k['library', 'wall']:5.1f} min ({per_10k['library', 'cpu']:5.1f} CPU-min), "
          f"export {per_10k['export', 'wall']:5.1f} min ({per_10k['export', 'cpu']:5.1f} CPU-min)", flush=True)
    print(f"RATIO library/export throughput: cold {median('export', 0, 'wall') / median('library', 0, 'wall'):.2f}, "
          f"warm {median('export', 1, 'wall') / median('library', 1, 'wall'):.2f}; "
          f"10,000 paintings {per_10k['export', 'wall'] / per_10k['library', 'wall']:.2f} "
          f"(CPU {per_10k['export', 'cpu'] / per_10k['library', 'cpu']:.2f})", flush=True)


def time_library(run_id: int, n: int, url: str) -> list[Took]:
    """``score_shard`` over every painting, cold (it loads the model) and warm (given the model it
    loaded, already traced); the scores of the previous pass are deleted first."""
    from painting_ml.core import db
    from painting_ml.learn import inference
    from painting_ml.results.attribution import score_shard

    real = inference.load_run_model
    loaded: list[inference.RunModel] = []

    def load_once(*a, **kw) -> inference.RunModel:
        if not loaded:
            loaded.append(real(*a, **kw))
        return loaded[0]

    took: list[Took] = []
    inference.load_run_model = load_once  # score_shard imports it at call time
    try:
        for _ in range(2):
            with db.connect(url) as conn:
                conn.execute("DELETE FROM attribution_scores WHERE run_id = %s", (run_id,))
            with clock(took):
                scored = score_shard(run_id, 0, 1, url=url)["scored"]
            assert scored == n, f"scored {scored} of {n}"
    finally:
        inference.load_run_model = real
    return took


def time_export(export: str, paths: list[str], batch: int) -> list[Took]:
    """Every file through the serving export (bytes read from disk each time), cold (from
    ``tf.saved_model.load`` on) and warm (the loaded export again)."""
    import tensorflow as tf

    took: list[Took] = []
    served = None
    for _ in range(2):
        with clock(took):
            served = served or tf.saved_model.load(export)
            for i in range(0, len(paths), batch):
                out = served.serve(tf.constant([Path(p).read_bytes() for p in paths[i:i + batch]]))
                assert out["embedding"].shape[0] == len(paths[i:i + batch])
    return took


def store_embeddings(url: str, emb: np.ndarray, start: int) -> None:
    """Catalog rows and attribution rows of run 1 for ``emb`` (COPY)."""
    from painting_ml.core import db
    from painting_ml.data import ingest as catalog

    n = len(emb)
    names = [f"{start + i}.jpg" for i in range(n)]
    rows = [catalog_row(f, f"Artist {(start + i) % 2300}", ROOT, 100, 100) for i, f in enumerate(names)]
    with db.connect(url) as conn:
        if start == 0:
            conn.execute("INSERT INTO dataset_versions (content_hash, config, artists, artist_counts) "
                         "VALUES ('bench', '{}', '[]', '{}')")
            conn.execute("INSERT INTO runs (id, run_key, dataset_version_id, config, status, run_dir) "
                         "VALUES (1, 'bench', 1, '{}', 'evaluated', '/r')")
            conn.execute("INSERT INTO champion (run_id) VALUES (1)")
        # load_rows marks the root's other rows gone: pass them all again.
        prior = [catalog_row(f"{i}.jpg", f"Artist {i % 2300}", ROOT, 100, 100) for i in range(start)]
        catalog.load_rows(conn, prior + rows, [], "bench.csv", ROOT)
        with conn.cursor() as cur, cur.copy("COPY attribution_scores (run_id, data_root, filename, artists, "
                                            "probabilities, label_probability, embedding) FROM STDIN") as copy:
            for f, e in zip(names, emb, strict=True):
                copy.write_row((1, ROOT, f, ["Artist 0"], [1.0], None, e.tolist()))


def time_queries(url: str, queries: np.ndarray, k: int) -> tuple[float, list[list[str]]]:
    """Median latency (ms) of the nearest-neighbour statement and the answers."""
    from painting_ml.core import db

    times, answers = [], []
    with db.connect(url) as conn:
        for q in queries:
            t = time.perf_counter()
            rows = db.fetch_dicts(conn, db.sql("attribution", "nearest"), {"run": 1, "query": q.tolist(), "k": k})
            times.append((time.perf_counter() - t) * 1000)
            answers.append([r["filename"] for r in rows])
    return statistics.median(times), answers


def bench_search(args) -> None:
    from painting_ml.core import db

    rng = np.random.default_rng(0)
    sizes = [int(s) for s in args.sizes.split(",")]
    total = max(sizes)
    # Clustered like real embeddings (paintings of one artist near each other), unit length.
    centres = rng.normal(size=(2300, args.dims))
    emb = centres[rng.integers(0, 2300, total)] + 0.7 * rng.normal(size=(total, args.dims))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    queries = emb[rng.integers(0, total, args.queries)] + 0.05 * rng.normal(size=(args.queries, args.dims))
    print(f"\nnearest-neighbour search, k={args.k}, {args.dims} dimensions, median of {args.queries} queries "
          f"({args.array_queries} on arrays)", flush=True)
    with scratch(vector=True) as vurl, scratch(vector=False) as aurl:
        with db.connect(vurl) as conn:
            has_vector = db.fetch_one(conn, db.sql("attribution", "vector_search"), required=True)["enabled"]
        if not has_vector:
            print("this server has no pgvector: array side only")
        stored = 0
        for size in sizes:
            for url in ([vurl] if has_vector else []) + [aurl]:
                store_embeddings(url, emb[stored:size], stored)
            stored = size
            line = f"{size:>7,} embeddings: "
            if has_vector:
                with db.connect(vurl) as conn:
                    conn.execute("SET maintenance_work_mem = '512MB'")
                    conn.execute("DROP INDEX IF EXISTS attribution_scores_hnsw_run_1")
                    t = time.perf_counter()
                    conn.execute(db.sql("attribution", "vector_index"), {"run": 1, "dims": args.dims})
                    build_s = time.perf_counter() - t
                    conn.execute("ANALYZE attribution_scores")
                v_ms, v_ans = time_queries(vurl, queries, args.k)
            a_ms, a_ans = time_queries(aurl, queries[: args.array_queries], args.k)
            if has_vector:
                # Only the first --array-queries queries ran on arrays: recall over those.
                recall = np.mean([len(set(v) & set(a)) / args.k for v, a in zip(v_ans, a_ans, strict=False)])
                print(line + f"pgvector HNSW {v_ms:8.1f} ms | arrays {a_ms:9.1f} ms | RATIO arrays/pgvector "
                      f"{a_ms / v_ms:7.1f}x | recall@{args.k} {recall:.2f} | index build {build_s:.1f} s", flush=True)
            else:
                print(line + f"arrays {a_ms:9.1f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=160, help="generated paintings to score")
    ap.add_argument("--rounds", type=int, default=3, help="scoring rounds (each times both paths, cold and warm)")
    ap.add_argument("--backbone", default="resnet50", choices=["resnet18", "resnet50", "resnet101"])
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dims", type=int, default=256, help="embedding size (the head's units)")
    ap.add_argument("--sizes", default="10000,100000", help="stored embeddings to search, ascending")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--array-queries", type=int, default=3, help="the array scans are slow: fewer of them")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--skip-scoring", action="store_true")
    ap.add_argument("--skip-search", action="store_true")
    args = ap.parse_args()
    if not args.skip_scoring:
        bench_scoring(args)
    if not args.skip_search:
        bench_search(args)


if __name__ == "__main__":
    main()
