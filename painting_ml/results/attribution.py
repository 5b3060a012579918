"""The champion at work on the whole catalog: the top-k artists and an embedding for every usable
painting, stored in ``attribution_scores``; nearest-neighbour search over the embeddings.

Scoring is incremental: a painting is scored by a run once (again only when its catalog row
changed), so rerunning scores nothing twice, and a new champion scores everything afresh. The
work splits into stable shards (a hash of the painting's key), which the ``painting_attribute``
DAG maps over on the ``gpu`` queue; each shard commits batch by batch, so a retried shard resumes
where it stopped. SQL over the results: the ``attributions``, ``attribution_rivals`` and
``artist_neighbours`` views and the ``painting_nearest`` function (pgvector HNSW index where the
server has the extension, plain arrays elsewhere; see ``sql/migrations/0004_attributions.sql``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from painting_ml.core import db
from painting_ml.core.errors import PaintingMLError

if TYPE_CHECKING:
    from painting_ml.learn.metrics import FloatArray

log = logging.getLogger(__name__)

#: Paintings per shard the DAG aims for; a shard is one mapped task (one model load).
SHARD_SIZE = 2000
#: Paintings inferred and committed at a time inside a shard.
BATCH = 256


def current_champion(url: str | None = None) -> int | None:
    """The champion run, or None while no run was promoted."""
    with db.connect(url) as conn:
        row = db.fetch_one(conn, db.sql("runs", "current_champion"))
    return int(row["run_id"]) if row else None


def require_champion(url: str | None = None) -> int:
    run_id = current_champion(url)
    if run_id is None:
        raise PaintingMLError("no champion yet: promote a run first (`make demo`, or `painting-ml promote --run-id N`)")
    return run_id


def pending_count(run_id: int, url: str | None = None) -> int:
    """Usable paintings run ``run_id`` has not scored (or scored before their row changed)."""
    with db.connect(url) as conn:
        row = db.fetch_one(conn, db.sql("attribution", "count_pending"), {"run": run_id}, required=True)
    return int(row["pending"])


def plan_attribution(run_id: int, shard_size: int = SHARD_SIZE, max_shards: int = 64,
                     url: str | None = None) -> dict[str, int]:
    """How many shards the pending paintings of ``run_id`` split into (none when nothing is pending)."""
    pending = pending_count(run_id, url)
    shards = min(max_shards, math.ceil(pending / shard_size)) if pending else 0
    return {"run_id": run_id, "pending": pending, "shards": shards}


def unit_rows(x: FloatArray) -> FloatArray:
    """Rows scaled to unit L2 length (a zero row stays zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def score_rows(probs: FloatArray, embeddings: FloatArray, names: Sequence[str], labels: Sequence[str],
               k: int) -> list[dict[str, Any]]:
    """One ``attribution_scores`` row per painting: top-k artists with probabilities, the
    probability of its catalog label (None when the label is not one of ``names``) and its
    unit-length embedding. Pure: no database, no model."""
    index = {a: i for i, a in enumerate(names)}
    k = min(k, len(names))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    emb = unit_rows(np.asarray(embeddings, dtype=np.float64))
    rows: list[dict[str, Any]] = []
    for n, label in enumerate(labels):
        top = order[n]
        rows.append({"artists": [names[i] for i in top], "probabilities": [float(probs[n, i]) for i in top],
                     "label_probability": float(probs[n, index[label]]) if label in index else None,
                     "embedding": emb[n].tolist()})
    return rows


def score_shard(run_id: int, shard: int = 0, shards: int = 1, k: int = 5, batch: int = BATCH,
                url: str | None = None) -> dict[str, int]:
    """Score the pending paintings of one shard with run ``run_id``'s model, committing every
    ``batch`` paintings. Loads the model only when something is pending."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    with db.connect(url) as conn:
        todo = db.fetch_dicts(conn, db.sql("attribution", "pending_shard"),
                              {"run": run_id, "shard": shard, "shards": shards})
    if not todo:
        return {"run_id": run_id, "shard": shard, "scored": 0}
    from painting_ml.learn.inference import infer_chunks, load_run_model

    rm = load_run_model(run_id, url)
    names = rm.classes["artist"]
    parts = (todo[start:start + batch] for start in range(0, len(todo), batch))
    done = 0
    # Each chunk is inferred before its transaction opens: slow work holds no lock.
    for part, out in zip(parts, infer_chunks(rm, [p["path"] for p in todo], batch), strict=True):
        rows = score_rows(out["artist"], out["embedding"], names, [p["artist"] for p in part], k)
        with db.connect(url) as conn:
            write_scores(conn, run_id, part, rows)
        done += len(part)
        log.info("run %d shard %d/%d: scored %d of %d", run_id, shard, shards, done, len(todo))
    return {"run_id": run_id, "shard": shard, "scored": len(todo)}


#: Binary COPY types of ``copy_staging``'s columns, in its order.
_SCORE_TYPES = ("int4", "text", "text", "text[]", "float8[]", "float8", "float8[]")


def write_scores(conn: db.Connection, run_id: int, paintings: Sequence[dict[str, Any]],
                 rows: Sequence[dict[str, Any]]) -> None:
    """Upsert the :func:`score_rows` of ``paintings`` (rows with ``data_root`` and ``filename``)
    on ``conn``'s transaction: binary COPY into a temporary staging table, then one set-based
    upsert."""
    with conn.cursor() as cur:
        cur.execute(db.sql("attribution", "create_staging"))
        with cur.copy(db.sql("attribution", "copy_staging")) as copy:
            copy.set_types(_SCORE_TYPES)
            for p, row in zip(paintings, rows, strict=True):
                copy.write_row((run_id, p["data_root"], p["filename"], row["artists"], row["probabilities"],
                                row["label_probability"], row["embedding"]))
        cur.execute(db.sql("attribution", "upsert_staged"))


def finish_attribution(run_id: int, url: str | None = None) -> dict[str, Any]:
    """After scoring: make sure the run's nearest-neighbour index exists (pgvector) and
    recompute the artist centroids."""
    with db.connect(url) as conn:
        counts = db.fetch_one(conn, db.sql("attribution", "scored_count"), {"run": run_id}, required=True)
        indexed = False
        if counts["scored"]:
            indexed = bool(db.fetch_one(conn, db.sql("attribution", "vector_index"),
                                        {"run": run_id, "dims": int(counts["dims"])}, required=True)["indexed"])
        conn.execute(db.sql("attribution", "delete_centroids"), {"run": run_id})
        artists = conn.execute(db.sql("attribution", "insert_centroids"), {"run": run_id}).rowcount
    mosaics = render_second_look_mosaics(run_id, url=url) if counts["scored"] else []
    if mosaics and (mosaics[0].parent.parent / "report.html").is_file():
        from painting_ml.results.report import render_report

        render_report(run_id, url)  # the champion's report now shows them
    return {"run_id": run_id, "scored": int(counts["scored"]), "vector_index": indexed, "artists": artists,
            "second_look": len(mosaics)}


SECOND_LOOK_DIR = "second_look"
SECOND_LOOK_KIND = "mosaic_second_look"


def render_second_look_mosaics(run_id: int, p: float = 0.2, q: float = 0.6, limit: int = 24, typical: int = 4,
                               thumb: int = 96, url: str | None = None) -> list[Path]:
    """One mosaic per painting worth a second look (its catalog artist gets < ``p``, another
    artist > ``q``): the painting, then its catalog artist's most typical paintings, then the
    rival's. Written to ``<run_dir>/second_look/`` (replacing the previous set), recorded as
    ``mosaic_second_look`` artifacts; returns the files, most doubted painting first."""
    import shutil

    from painting_ml.core.artifacts import record_artifact, run_folder
    from painting_ml.core.files import write_atomic
    from painting_ml.results.mosaics import render_mosaic, slugify

    with db.connect(url) as conn:
        run = db.fetch_one(conn, db.sql("runs", "get_run"), {"id": run_id}, required=True)
        flagged = db.fetch_dicts(conn, db.sql("attribution", "flagged"),
                                 {"run": run_id, "p": p, "q": q, "limit": limit})
        examples: dict[str, list[dict[str, Any]]] = {}
        for artist in {a for f in flagged for a in (f["catalog_artist"], f["rival_artist"])}:
            examples[artist] = db.fetch_dicts(conn, db.sql("attribution", "typical"),
                                              {"run": run_id, "artist": artist, "n": typical + 1})
    out = run_folder(run["run_dir"]) / SECOND_LOOK_DIR
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for n, f in enumerate(flagged, start=1):
        tiles: list[dict[str, Any]] = [{"path": f["path"], "correct": False, "caption": f"{f['filename']}"}]
        for artist, correct in ((f["catalog_artist"], True), (f["rival_artist"], False)):
            same = [e for e in examples[artist] if e["filename"] != f["filename"]][:typical]
            tiles += [{"path": e["path"], "correct": correct, "caption": f"{artist} {e['probability']:.0%}"}
                      for e in same]
        title = (f"{f['filename']}: catalogued as {f['catalog_artist']} ({f['catalog_artist_probability']:.0%}), "
                 f"the model says {f['rival_artist']} ({f['rival_probability']:.0%}); green: typical "
                 f"{f['catalog_artist']}, red: typical {f['rival_artist']}")
        path = out / f"{n:03d}_{slugify(Path(f['filename']).stem)}.png"
        write_atomic(render_mosaic(title, tiles, thumb, columns=len(tiles)), path, format="PNG")
        written.append(path)
    with db.connect(url) as conn:
        conn.execute(db.sql("attribution", "delete_artifacts_of_kind"), {"run": run_id, "kind": SECOND_LOOK_KIND})
        for path in written:
            record_artifact(conn, run_id, SECOND_LOOK_KIND, path)
    return written


def attribute_catalog(run_id: int | None = None, k: int = 5, url: str | None = None) -> dict[str, Any]:
    """Score every pending painting with the champion (or ``run_id``) in this process, then finish."""
    run_id = require_champion(url) if run_id is None else run_id
    scored = score_shard(run_id, 0, 1, k=k, url=url)["scored"]
    return {**finish_attribution(run_id, url), "newly_scored": scored}


def vector_search_enabled(url: str | None = None) -> bool:
    """Whether nearest-neighbour search uses pgvector on this database (else plain arrays)."""
    with db.connect(url) as conn:
        return bool(db.fetch_one(conn, db.sql("attribution", "vector_search"), required=True)["enabled"])


def nearest(run_id: int, embedding: Sequence[float] | FloatArray, k: int = 10,
            url: str | None = None) -> list[dict[str, Any]]:
    """The ``k`` paintings run ``run_id`` scored whose embeddings are closest (cosine) to ``embedding``."""
    query = unit_rows(np.asarray([embedding], dtype=np.float64))[0].tolist()
    with db.connect(url) as conn:
        return db.fetch_dicts(conn, db.sql("attribution", "nearest"), {"run": run_id, "query": query, "k": k})


def similar_to_image(image: str, k: int = 10, url: str | None = None, run_id: int | None = None) -> dict[str, Any]:
    """Embed an image file with the champion (or run ``run_id``) and list the ``k`` closest catalog
    paintings (artist and cosine distance)."""
    from painting_ml.learn.inference import checked_image_paths, infer, load_run_model

    run_id = require_champion(url) if run_id is None else run_id
    if pending_count(run_id, url) and not _scored_any(run_id, url):
        raise PaintingMLError(f"run {run_id} has not scored the catalog yet; run `painting-ml attribute` (with "
                              "--run-id for a run that is not the champion; the painting_attribute DAG does it "
                              "for each new champion)")
    paths = checked_image_paths([image])
    rm = load_run_model(run_id, url)
    out = infer(rm, paths)
    return {"run_id": run_id, "image": image, "neighbours": nearest(run_id, out["embedding"][0], k, url)}


def _scored_any(run_id: int, url: str | None) -> bool:
    with db.connect(url) as conn:
        return bool(db.fetch_one(conn, db.sql("attribution", "scored_count"), {"run": run_id}, required=True)["scored"])
