"""Use a trained run: class probabilities and embeddings for images, top-k prediction, and
same-artist verification of two paintings.

The model used by default is the champion (``champions`` table, written by the promotion gate),
falling back to the latest evaluated run while no champion exists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from painting_ml import db
from painting_ml.exceptions import DataError, PaintingMLError
from painting_ml.models import EMBEDDING_LAYER


@dataclass
class RunModel:
    run_id: int
    model: object          # keras.Model with outputs {target..., "embedding"}
    classes: dict[str, list[str]]
    config: dict
    version_id: int        # the dataset version it was trained on


def champion_run_id(url: str | None = None) -> int:
    """The current champion run, or the latest evaluated run when none was promoted yet."""
    with db.connect(url) as conn:
        row = conn.execute(db.sql("runs", "current_champion")).fetchone()
        if row is None:
            row = conn.execute(db.sql("runs", "latest_run")).fetchone()
    if row is None:
        raise PaintingMLError("no trained and evaluated run yet; run `make demo` or `painting-ml train` first")
    return int(row[0])


def load_run_model(run_id: int | None = None, url: str | None = None) -> RunModel:
    """Load a run's best model as a model that returns every target's probabilities and the
    embedding."""
    import keras

    run_id = champion_run_id(url) if run_id is None else run_id
    with db.connect(url) as conn:
        run = db.fetch_dicts(conn, db.sql("runs", "get_run"), {"id": run_id})
    if not run:
        raise PaintingMLError(f"run {run_id} does not exist; `painting-ml runs` lists the runs")
    run = run[0]
    if not run["model_path"] or not Path(run["model_path"]).is_file():
        raise PaintingMLError(f"run {run_id} has no saved model ({run['model_path'] or 'not trained yet'}); "
                              "train it first")
    classes = run["classes"] or json.loads((Path(run["run_dir"]) / "classes.json").read_text())
    model = keras.models.load_model(run["model_path"])
    outputs = {t: model.get_layer(t).output for t in classes}
    outputs["embedding"] = model.get_layer(EMBEDDING_LAYER).output
    return RunModel(run_id, keras.Model(model.inputs, outputs), classes, run["config"], run["dataset_version_id"])


def infer(rm: RunModel, paths: Sequence[str], batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Probabilities per target and embeddings for image files (in order)."""
    from painting_ml.data import make_dataset

    if not paths:
        return {**{t: np.zeros((0, len(c))) for t, c in rm.classes.items()}, "embedding": np.zeros((0, 0))}
    ds = make_dataset(list(paths), None, image_size=int(rm.config["image_size"]),
                      batch_size=batch_size or int(rm.config["batch_size"]), shuffle=False, seed=0,
                      cache="none", resize_mode=rm.config.get("resize_mode", "crop"))
    out = rm.model.predict(ds, verbose=0)
    return {k: np.asarray(v) for k, v in out.items()}


def checked_image_paths(images: Sequence[str]) -> list[str]:
    """Each image must exist and decode; a huge one is replaced by a reduced copy."""
    from painting_ml.catalog import probe_image
    from painting_ml.settings import get_settings

    out = []
    for image in images:
        p = Path(image)
        if not p.exists():
            raise DataError(f"image {image} not found; pass the path of a JPEG or PNG file")
        probe = probe_image(p, reduced_dir=get_settings().home / "reduced")
        if probe.reason:
            raise DataError(f"image {image} cannot be used ({probe.reason}: {probe.detail}); pass a readable image")
        out.append(probe.reduced_path or str(p.resolve()))
    return out


def top_k(probs: np.ndarray, names: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probs)[:k]
    return [(names[i], float(probs[i])) for i in order]


def predict(images: Sequence[str], run_id: int | None = None, k: int = 3, url: str | None = None) -> dict:
    """Top-k artists (and the other targets' best class) for each image."""
    paths = checked_image_paths(images)
    rm = load_run_model(run_id, url)
    out = infer(rm, paths)
    results = []
    for n, image in enumerate(images):
        entry = {"image": image, "artists": [{"artist": a, "probability": p}
                                             for a, p in top_k(out["artist"][n], rm.classes["artist"], k)]}
        for t in rm.classes:
            if t != "artist":
                name, p = top_k(out[t][n], rm.classes[t], 1)[0]
                entry[t] = {"label": name, "probability": p}
        results.append(entry)
    return {"run_id": rm.run_id, "predictions": results}


def pair_scores(probs_a: np.ndarray, probs_b: np.ndarray, emb_a: np.ndarray, emb_b: np.ndarray) -> dict[str, np.ndarray]:
    """Same-artist scores of paired rows.

    ``prob_product`` = sum_k p_k q_k, the probability that two independent draws from the two
    predicted artist distributions name the same artist: a calibrated-as-the-model probability for
    artists the model knows. ``embedding_cosine`` = cosine of the two embeddings, which also
    separates artists the model never saw.
    """
    prod = np.sum(probs_a * probs_b, axis=-1)
    na = emb_a / np.maximum(np.linalg.norm(emb_a, axis=-1, keepdims=True), 1e-12)
    nb = emb_b / np.maximum(np.linalg.norm(emb_b, axis=-1, keepdims=True), 1e-12)
    return {"prob_product": prod, "embedding_cosine": np.sum(na * nb, axis=-1)}


def verify(image_a: str, image_b: str, run_id: int | None = None, url: str | None = None) -> dict:
    """The probability that two paintings share a painter, with both scores and each image's top artist."""
    paths = checked_image_paths([image_a, image_b])
    rm = load_run_model(run_id, url)
    out = infer(rm, paths)
    scores = pair_scores(out["artist"][:1], out["artist"][1:], out["embedding"][:1], out["embedding"][1:])
    names = rm.classes["artist"]
    return {
        "run_id": rm.run_id, "image_a": image_a, "image_b": image_b,
        "same_artist_probability": float(scores["prob_product"][0]),
        "embedding_cosine": float(scores["embedding_cosine"][0]),
        "top_artist_a": top_k(out["artist"][0], names, 1)[0],
        "top_artist_b": top_k(out["artist"][1], names, 1)[0],
    }
