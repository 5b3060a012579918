"""The label audit's engine: k fold trainings and every painting's out-of-fold probabilities.

An audit (``audits`` row, keyed by a stable ``audit_key``) trains one ordinary run per fold on
that fold's dataset version (:mod:`painting_ml.data.folds`), with the run key
``audit:<audit_key>:fold<i>`` (a retried fold resumes its checkpoint; the key marks the run's
``purpose`` 'audit', which keeps it out of every "latest run" pick and out of the champion's
way), then scores the fold's held-out paintings with that model: each painting's probabilities
come from the one model that never saw it, which is what confident learning needs
(:mod:`painting_ml.results.label_issues` ranks them). The same model also places each held-out
painting among the paintings it trained on: the labels of its :data:`NEIGHBOURS` nearest
training paintings in the model's embedding space vote on its artist (a deep k-nearest-neighbour
estimate, Bahri et al., ICML 2020); a colourless painting (a grey JPEG, a black-and-white scan) is
compared with grey views of them (:func:`fold_votes`). A network that trained to fit its training
set is confident far beyond its accuracy, so a wrong label the fold model plainly disagrees with can still fall
short of cleanlab's per-class confidence thresholds; the vote shares are not stretched that way,
and cleanlab ranks from them (docs/benchmarks.md, "Label noise").

Recipes: ``full`` trains with the recipe in force; ``head`` freezes the backbone (the config's
weights) and trains the head only — k trainings at the cost of little more than k passes of
feature extraction, which is what makes an audit affordable with ImageNet weights.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb

from painting_ml.core import db
from painting_ml.core.config import FineTune, RunConfig
from painting_ml.core.errors import ConfigError, PaintingMLError
from painting_ml.data.selection import Selection

log = logging.getLogger(__name__)

#: How many of a fold's training paintings vote on each of its held-out paintings.
NEIGHBOURS = 5


class Recipe(StrEnum):
    """How the fold models train."""

    HEAD = "head"   # frozen backbone (the config's weights), head trained
    FULL = "full"   # the recipe in force


def audit_config(cfg: RunConfig, recipe: str) -> RunConfig:
    """The config the fold runs train with: ``cfg`` under ``recipe``, class weights on (the audited
    set is not equalised) and no wandb run per fold (the audit's evidence is in Postgres).

    Raises:
        ConfigError: ``recipe`` is not head or full.
    """
    try:
        chosen = Recipe(recipe)
    except ValueError:
        raise ConfigError(f"audit_recipe={recipe!r}: choose head (frozen backbone, trained head) or full "
                          "(the recipe in force)") from None
    changes: dict[str, Any] = {"class_weights": True, "wandb": False}
    if chosen is Recipe.HEAD:
        if cfg.weights is None:
            log.warning("audit recipe 'head' with no backbone weights: the frozen backbone is random; "
                        "use recipe 'full' when training from scratch")
        changes["fine_tune"] = FineTune.FROZEN.value
    return cfg.replace(**changes)


def fold_run_key(audit_key: str, fold: int) -> str:
    """The run key of fold ``fold``'s training (its prefix ``audit:`` sets the run's purpose)."""
    return f"audit:{audit_key}:fold{fold}"


def start_audit(cfg: RunConfig, selection: Selection, folds: int, recipe: str, audit_key: str,
                url: str | None = None) -> dict[str, Any]:
    """Create the audit's versions and its ``audits`` / ``audit_folds`` rows, or find them again
    (same ``audit_key``: a retry keeps the folds it began with).

    Returns:
        ``{"audit_id", "folds": [0 .. k-1], "paintings", "dataset_version_id"}``.
    """
    from painting_ml.data.folds import create_audit_versions
    from painting_ml.data.ingest import resolve_root

    fold_cfg = audit_config(cfg, recipe)
    with db.connect(url) as conn:
        found = db.fetch_one(conn, db.sql("audit", "audit_by_key"), {"key": audit_key})
    if found is not None:  # a retry: the folds it began with, whatever the catalog says now
        info = audit_info(int(found["id"]), url)
        with db.connect(url) as conn:
            conn.execute(db.sql("audit", "upsert_audit"), {
                "key": audit_key, "version": info["dataset_version_id"], "root": info["data_root"],
                "folds": info["folds"], "recipe": info["recipe"], "config": Jsonb(info["config"])})
        return {"audit_id": info["id"], "folds": list(range(info["folds"])), "paintings": info["paintings"],
                "dataset_version_id": info["dataset_version_id"]}
    plan = create_audit_versions(cfg, selection, folds, url)
    with db.connect(url) as conn:
        row = db.fetch_one(conn, db.sql("audit", "upsert_audit"), {
            "key": audit_key, "version": plan.audited_version_id, "root": resolve_root(cfg.data_dir),
            "folds": folds, "recipe": Recipe(recipe).value, "config": Jsonb(fold_cfg.to_dict())}, required=True)
        audit_id = int(row["id"])
        with conn.cursor() as cur:
            cur.executemany(db.sql("audit", "insert_fold"),
                            [{"audit": audit_id, "fold": i, "version": v} for i, v in enumerate(plan.fold_version_ids)])
    log.info("audit %d (%s): %d paintings of %d artists in %d folds, recipe %s", audit_id, audit_key,
             plan.paintings, len(plan.artists), folds, recipe)
    return {"audit_id": audit_id, "folds": list(range(folds)), "paintings": plan.paintings,
            "dataset_version_id": plan.audited_version_id}


def audit_info(audit_id: int, url: str | None = None) -> dict[str, Any]:
    """The audit's row, its artists (class order), folds and number of audited paintings.

    Raises:
        PaintingMLError: no such audit (one line: where to list them).
    """
    with db.connect(url) as conn:
        row = db.fetch_one(conn, db.sql("audit", "get_audit"), {"id": audit_id})
        if row is None:
            raise PaintingMLError(f"audit {audit_id} does not exist; `painting-ml audit --list` lists the audits")
        folds = db.fetch_dicts(conn, db.sql("audit", "folds_of_audit"), {"id": audit_id})
        n = db.fetch_one(conn, db.sql("audit", "audited_count"), {"id": row["dataset_version_id"]},
                         required=True)["n"]
    return {**row, "artists": list(row["artists"]), "fold_rows": folds, "paintings": int(n)}


def _fold(info: dict[str, Any], fold: int) -> dict[str, Any]:
    rows = {int(r["fold"]): r for r in info["fold_rows"]}
    if fold not in rows:
        raise PaintingMLError(f"audit {info['id']} has no fold {fold}; its folds are 0 to {info['folds'] - 1}")
    return rows[fold]


def fold_version(audit_id: int, fold: int, url: str | None = None) -> int:
    """The dataset version of the audit's fold ``fold``."""
    return int(_fold(audit_info(audit_id, url), fold)["dataset_version_id"])


def fold_config(audit_id: int, url: str | None = None) -> RunConfig:
    """The config the audit's folds train with (stored with the audit)."""
    return RunConfig.from_params(dict(audit_info(audit_id, url)["config"]))


def train_fold(audit_id: int, fold: int, url: str | None = None) -> int:
    """Train fold ``fold`` with the ordinary engine (resumable: same run key) and record its run.

    The fold's version must have its image-cache copies (the augment step makes them)."""
    from painting_ml.learn.training import train

    info = audit_info(audit_id, url)
    version_id = int(_fold(info, fold)["dataset_version_id"])
    cfg = RunConfig.from_params(dict(info["config"]))
    run_id = train(cfg, version_id, fold_run_key(info["audit_key"], fold), url)
    with db.connect(url) as conn:
        conn.execute(db.sql("audit", "set_fold_run"), {"audit": audit_id, "fold": fold, "run": run_id})
    return run_id


def held_out_items(audit_id: int, fold: int, url: str | None = None) -> tuple[int, list[Any]]:
    """The fold's run and the paintings its model never saw (the fold's test split).

    The out-of-fold guarantee is checked here, not assumed: the run trained on this fold's
    version, and none of the held-out paintings is in that version's train or val split.

    Raises:
        PaintingMLError: the fold has no trained run yet.
    """
    from painting_ml.data.versions import load_items

    info = audit_info(audit_id, url)
    version_id = int(_fold(info, fold)["dataset_version_id"])
    with db.connect(url) as conn:
        run = db.fetch_one(conn, db.sql("audit", "run_of_fold"), {"audit": audit_id, "fold": fold}, required=True)
    if run["run_id"] is None or run["model_path"] is None:
        raise PaintingMLError(f"fold {fold} of audit {audit_id} has no trained model yet; train it first "
                              "(painting_audit's train_fold task)")
    artists, items = load_items(version_id, url)
    held_out = [i for i in items if i.split == "test"]
    seen = {i.filename for i in items if i.split in ("train", "val")}
    # A painting's probabilities must never come from a model that saw it.
    assert int(run["dataset_version_id"]) == version_id, (
        f"fold {fold} run {run['run_id']} trained on version {run['dataset_version_id']}, not {version_id}")
    assert not seen & {i.filename for i in held_out}, f"fold {fold}: held-out paintings in its train/val split"
    assert artists == info["artists"], f"fold {fold}: class order differs from the audit's"
    return int(run["run_id"]), held_out


def neighbour_votes(queries: np.ndarray, references: np.ndarray, reference_labels: np.ndarray, classes: int,
                    k: int = NEIGHBOURS, chunk: int = 256) -> np.ndarray:
    """Each query's vote shares: the fraction of its ``k`` nearest references (cosine similarity
    of the embeddings) that carry each label.

    Args:
        queries: ``(n, d)`` embeddings of the paintings judged.
        references: ``(m, d)`` embeddings of the paintings the model trained on.
        reference_labels: ``(m,)`` their class ids (the labels the model trained with).
        classes: the number of classes (the width of a row).
        k: voters per query (all ``m`` when there are fewer).
        chunk: queries compared at once (bounds the similarity matrix to ``chunk x m`` float32
            values: 80 MB for 80,000 references).

    Returns:
        ``(n, classes)`` vote shares; each row sums to 1.

    Raises:
        ValueError: no references, or embeddings of different widths.
    """
    q = np.asarray(queries, dtype=np.float64)
    r = np.asarray(references, dtype=np.float64)
    labels = np.asarray(reference_labels, dtype=np.int64)
    if len(r) == 0 or len(labels) != len(r):
        raise ValueError(f"neighbour_votes needs references with one label each ({len(r)} references, "
                         f"{len(labels)} labels)")
    if len(q) and q.shape[1] != r.shape[1]:
        raise ValueError(f"query embeddings have {q.shape[1]} values, references {r.shape[1]}")
    q = (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    r = (r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    k = min(k, len(r))
    votes = np.zeros((len(q), classes), dtype=np.float64)
    for start in range(0, len(q), chunk):
        sims = q[start:start + chunk] @ r.T
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # the k largest, in no order
        rows = np.repeat(np.arange(len(nearest)) + start, k)
        np.add.at(votes, (rows, labels[nearest].ravel()), 1.0 / k)
    return votes


def training_items(audit_id: int, fold: int, url: str | None = None) -> list[Any]:
    """The paintings fold ``fold``'s model trained on (its version's train split), with the
    labels it trained with: the voters of :func:`neighbour_votes`."""
    from painting_ml.data.versions import load_items

    _, items = load_items(fold_version(audit_id, fold, url), url)
    return [i for i in items if i.split == "train"]


def fold_votes(rm: Any, queries: np.ndarray, query_paths: list[str], reference_paths: list[str],
               reference_labels: np.ndarray, classes: int, k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """The vote shares of the fold model's training paintings on its held-out paintings
    (:func:`neighbour_votes`), each painting compared like with like.

    A colourless painting (:func:`~painting_ml.data.images.colourless`: a grey JPEG, a
    black-and-white scan) has lost the colour a model trained mostly on colour images leans on, so
    among coloured paintings its nearest are other grey ones, whoever painted them. It is compared
    with grey views of the training paintings instead (one more pass of the model over them, made
    only when the fold holds a colourless painting).

    Args:
        rm: the fold's loaded model.
        queries: ``(n, d)`` embeddings of the held-out paintings.
        query_paths: their image files (the pixels the model read).
        reference_paths: the training paintings' image files.
        reference_labels: their class ids (the labels the model trained with).
        classes: the number of classes.
        k: voters per painting.

    Returns:
        ``(votes, grey)``: ``(n, classes)`` vote shares and which held-out paintings were colourless.
    """
    from painting_ml.data.images import colourless
    from painting_ml.learn.inference import infer

    grey = np.asarray([colourless(p) for p in query_paths], dtype=bool)
    references = infer(rm, reference_paths)["embedding"]
    votes = neighbour_votes(queries, references, reference_labels, classes, k)
    if grey.any():
        grey_queries = infer(rm, [p for p, g in zip(query_paths, grey, strict=True) if g], grey=True)["embedding"]
        grey_references = infer(rm, reference_paths, grey=True)["embedding"]
        votes[grey] = neighbour_votes(grey_queries, grey_references, reference_labels, classes, k)
    return votes, grey


def predict_fold(audit_id: int, fold: int, url: str | None = None) -> dict[str, Any]:
    """Score fold ``fold``'s held-out paintings with the fold's model (their image-cache copies,
    the pixels training read) and store their probabilities, their nearest-neighbour votes among
    the fold's training paintings (:func:`neighbour_votes`, the training paintings' embeddings by
    the same model, :func:`fold_votes`) and unit-length embeddings (replacing the fold's earlier
    rows: idempotent).

    Returns:
        ``{"fold", "run_id", "paintings", "accuracy", "colourless"}`` (accuracy: the catalog label is
        the top artist; colourless: held-out paintings compared with grey views).
    """
    from painting_ml.data.derived import cached_paths, long_side_for
    from painting_ml.learn.inference import infer, load_run_model

    info = audit_info(audit_id, url)
    run_id, held_out = held_out_items(audit_id, fold, url)
    rm = load_run_model(run_id, url)
    if rm.classes["artist"] != info["artists"]:
        raise PaintingMLError(f"fold {fold}'s model (run {run_id}) has classes {rm.classes['artist']}, not the "
                              f"audit's {info['artists']}; audit again with a new audit key")
    long_side = long_side_for(int(rm.config["image_size"]))
    paths = cached_paths(held_out, long_side, url)
    out = infer(rm, paths)
    probs = np.asarray(out["artist"], dtype=np.float64)
    emb = np.asarray(out["embedding"], dtype=np.float64)
    t0 = time.perf_counter()
    trained = training_items(audit_id, fold, url)
    class_of = {a: n for n, a in enumerate(info["artists"])}
    votes, grey = fold_votes(rm, emb, paths, cached_paths(trained, long_side, url),
                             np.asarray([class_of[i.artist] for i in trained]), len(class_of))
    log.info("audit %d fold %d: %d training paintings embedded and voted in %.1f s (%d colourless held-out "
             "paintings compared with grey views)", audit_id, fold, len(trained), time.perf_counter() - t0,
             int(grey.sum()))
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    root = info["data_root"]
    with db.connect(url) as conn:
        sha = {r["filename"]: r["sha256"] for r in db.fetch_dicts(
            conn, db.sql("audit", "painting_hashes"), {"root": root, "files": [i.filename for i in held_out]})}
        conn.execute(db.sql("audit", "delete_fold_predictions"), {"audit": audit_id, "fold": fold})
        with conn.cursor() as cur, cur.copy(db.sql("audit", "copy_predictions")) as copy:
            for n, item in enumerate(held_out):
                copy.write_row((audit_id, item.data_root or root, item.filename, fold, item.artist,
                                probs[n].tolist(), votes[n].tolist(), emb[n].tolist(), sha.get(item.filename)))
        conn.execute(db.sql("audit", "fold_predicted"), {"audit": audit_id, "fold": fold})
    labels = np.asarray([class_of[i.artist] for i in held_out])
    accuracy = float((probs.argmax(axis=1) == labels).mean()) if len(labels) else 0.0
    log.info("audit %d fold %d: %d held-out paintings scored by run %d (top-1 agrees with the catalog: %.3f)",
             audit_id, fold, len(held_out), run_id, accuracy)
    return {"fold": fold, "run_id": run_id, "paintings": len(held_out), "accuracy": accuracy,
            "colourless": int(grey.sum())}


def fail_audit(audit_id: int, error: str, url: str | None = None) -> None:
    """Mark the audit failed with ``error`` (its folds and predictions are kept for a rerun)."""
    with db.connect(url) as conn:
        conn.execute(db.sql("audit", "fail_audit"), {"id": audit_id, "summary": Jsonb({"error": error})})
