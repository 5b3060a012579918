"""Attribution benchmark: scoring throughput of the champion over generated paintings, and
nearest-neighbour latency over 10,000 and 100,000 stored embeddings, pgvector HNSW index vs the
plain-array fallback, side by side.

1. Scoring: N generated paintings are ingested into a scratch database and scored by a model of
   the production shape (untrained weights: speed does not depend on them) through the library
   path the DAG's mapped task runs (``score_shard``: decode, infer, top-k, upsert), then through
   the serving export's endpoint (encoded bytes in, probabilities and embedding out).
2. Search: random unit embeddings (dimension of the head, 256 by default) are stored for a run in
   two scratch databases, one with pgvector (HNSW index per run) and one forced onto the array
   path; the same queries (k=10) are timed on both, and the index's recall@10 against the exact
   answer is reported.

    env -u PAINTING_DB_URL .venv/bin/python bench/attribute.py [--images 128] [--sizes 10000,100000]

The embedded pgserver PostgreSQL ships pgvector; a server without it runs the array side only.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

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
                name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
                conn.execute(pgsql.SQL("ALTER DATABASE {} SET painting_ml.vector_search = 'off'")
                             .format(pgsql.Identifier(name)))
        db.migrate(url)
        yield url
    finally:
        db.drop_database(base, url)


def catalog_rows(paths: list[str]) -> list[tuple]:
    """Catalog rows (PAINTING_COLUMNS order) for image files of one folder (the data root)."""
    rows = []
    for i, p in enumerate(paths):
        rows.append((Path(p).name, f"Artist {i % 8}", None, None, None, None, None, None, True, None, None, None,
                     str(Path(p).parent), Path(p).name, 256, 192, "RGB", "bench.csv", None))
    return rows


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
    with tempfile.TemporaryDirectory(prefix="bench_attribute_") as work:
        _bench_scoring(args, Path(work))


def _bench_scoring(args, work: Path) -> None:
    import tensorflow as tf

    from painting_ml.core import db
    from painting_ml.core.config import CPU_DEMO, RunConfig
    from painting_ml.data import ingest as catalog
    from painting_ml.learn.export import export_serving_model
    from painting_ml.learn.models import create_model
    from painting_ml.results.attribution import score_shard

    paths = painting_jpegs(Path(tempfile.gettempdir()) / "bench_attribute_images", args.images, 256, 192)
    classes = [f"Artist {i}" for i in range(args.classes)]
    cfg = RunConfig(**{**CPU_DEMO, "data_dir": str(work), "backbone": args.backbone, "image_size": args.image_size,
                       "weights": None, "head_units": args.dims, "online_augment": False, "wandb": False})
    model = create_model(cfg, len(classes))
    model.save(work / "model.keras")
    print(f"scoring {args.images} generated 256x192 paintings: {args.backbone} at {args.image_size} px, "
          f"{args.classes} artists, embedding {args.dims}; {machine()}", flush=True)
    with scratch(vector=False) as url:
        with db.connect(url) as conn:
            catalog.load_rows(conn, catalog_rows(paths), [], "bench.csv", str(Path(paths[0]).parent))
            run_id = fake_run(conn, str(work / "model.keras"), str(work), classes, args.image_size, args.batch)
        t = time.perf_counter()
        scored = score_shard(run_id, 0, 1, batch=args.batch * 4, url=url)["scored"]
        lib_s = time.perf_counter() - t
        print(f"library path (score_shard: model load, decode, infer, top-k, upsert): "
              f"{scored / lib_s:6.1f} img/s ({scored} in {lib_s:.1f} s)", flush=True)
        export = export_serving_model(run_id, url)["path"]
    served = tf.saved_model.load(export)
    raw = [Path(p).read_bytes() for p in paths]
    served.serve(tf.constant(raw[: args.batch]))  # trace/warm once
    t = time.perf_counter()
    for i in range(0, len(raw), args.batch):
        served.serve(tf.constant(raw[i:i + args.batch]))
    exp_s = time.perf_counter() - t
    print(f"serving export (bytes in, probabilities + embedding out):            "
          f"{len(raw) / exp_s:6.1f} img/s ({len(raw)} in {exp_s:.1f} s)", flush=True)


def store_embeddings(url: str, emb: np.ndarray, start: int) -> None:
    """Catalog rows and attribution rows of run 1 for ``emb`` (COPY)."""
    from painting_ml.core import db
    from painting_ml.data import ingest as catalog

    n = len(emb)
    names = [f"{start + i}.jpg" for i in range(n)]
    rows = [(f, f"Artist {(start + i) % 2300}", None, None, None, None, None, None, True, None, None, None, ROOT, f,
             100, 100, "RGB", "bench.csv", None) for i, f in enumerate(names)]
    with db.connect(url) as conn:
        if start == 0:
            conn.execute("INSERT INTO dataset_versions (content_hash, config, artists, artist_counts) "
                         "VALUES ('bench', '{}', '[]', '{}')")
            conn.execute("INSERT INTO runs (id, run_key, dataset_version_id, config, status, run_dir) "
                         "VALUES (1, 'bench', 1, '{}', 'evaluated', '/r')")
            conn.execute("INSERT INTO champion (run_id) VALUES (1)")
        # load_rows marks the root's other rows gone: pass them all again.
        prior = [(f"{i}.jpg", f"Artist {i % 2300}", None, None, None, None, None, None, True, None, None, None, ROOT,
                  f"{i}.jpg", 100, 100, "RGB", "bench.csv", None) for i in range(start)]
        catalog.load_rows(conn, prior + rows, [], "bench.csv", ROOT)
        with conn.cursor() as cur, cur.copy("COPY attribution_scores (run_id, data_root, filename, artists, "
                                            "probabilities, label_probability, embedding) FROM STDIN") as copy:
            for f, e in zip(names, emb):
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
            has_vector = db.fetch_one(conn, db.sql("attribution", "vector_search"))["enabled"]
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
                recall = np.mean([len(set(v) & set(a)) / args.k for v, a in zip(v_ans, a_ans)])
                print(line + f"pgvector HNSW {v_ms:8.1f} ms | arrays {a_ms:9.1f} ms | RATIO arrays/pgvector "
                      f"{a_ms / v_ms:7.1f}x | recall@{args.k} {recall:.2f} | index build {build_s:.1f} s", flush=True)
            else:
                print(line + f"arrays {a_ms:9.1f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=128, help="generated paintings to score")
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
    args = ap.parse_args()
    if not args.skip_scoring:
        bench_scoring(args)
    bench_search(args)


if __name__ == "__main__":
    main()
