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

from painting_ml.core import db
from painting_ml.core.errors import DataError, PaintingMLError
from painting_ml.learn.metrics import pair_scores, top_k


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
        row = db.fetch_one(conn, db.sql("runs", "current_champion"))
        if row is None:
            row = db.fetch_one(conn, db.sql("runs", "latest_run"))
    if row is None:
        raise PaintingMLError("no trained and evaluated run yet; run `make demo` or `painting-ml train` first")
    return int(row["run_id"])


def load_run_model(run_id: int | None = None, url: str | None = None) -> RunModel:
    """Load a run's best model as a model that returns every target's probabilities and the
    embedding. Everything that can be refused (no such run, no model file) is checked before
    Keras and TensorFlow load, so a bad run id is one line, not one line after TF's notices."""
    run_id = champion_run_id(url) if run_id is None else run_id
    with db.connect(url) as conn:
        run = db.fetch_dicts(conn, db.sql("runs", "get_run"), {"id": run_id})
    if not run:
        raise PaintingMLError(f"run {run_id} does not exist; `painting-ml runs` lists the runs")
    run = run[0]
    if not run["model_path"]:
        raise PaintingMLError(f"run {run_id} has no saved model (not trained yet); train it first")
    from painting_ml.core.store import get_store

    model_file = get_store().fetch(run["model_path"])  # StoreError: one line naming the key
    classes = run["classes"] or json.loads(get_store().fetch(f"{run['run_dir']}/classes.json").read_text())
    import keras

    from painting_ml.learn.models import EMBEDDING_LAYER

    model = keras.models.load_model(model_file)
    outputs = {t: model.get_layer(t).output for t in classes}
    outputs["embedding"] = model.get_layer(EMBEDDING_LAYER).output
    return RunModel(run_id, keras.Model(model.inputs, outputs), classes, run["config"], run["dataset_version_id"])


def infer(rm: RunModel, paths: Sequence[str], batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Probabilities per target and embeddings for image files (in order)."""
    from painting_ml.data.inputs import make_dataset

    if not paths:
        return {**{t: np.zeros((0, len(c))) for t, c in rm.classes.items()}, "embedding": np.zeros((0, 0))}
    ds = make_dataset(list(paths), None, image_size=int(rm.config["image_size"]),
                      batch_size=batch_size or int(rm.config["batch_size"]), shuffle=False, seed=0,
                      cache="none", resize_mode=rm.config.get("resize_mode", "crop"))
    out = rm.model.predict(ds, verbose=0)
    return {k: np.asarray(v) for k, v in out.items()}


def checked_image_paths(images: Sequence[str]) -> list[str]:
    """Each image must exist and be one training's decoder reads the same way (the decoder
    contract of :mod:`painting_ml.data.images`); a huge or EXIF-rotated one is replaced by a
    converted copy. Copies live in ``reduced/<hash of "predict">/<sha256 of the file>.jpg``, a
    folder of their own: a predicted file can never replace a dataset image's copy."""
    from painting_ml.data.images import probe_image, root_folder
    from painting_ml.core.settings import get_settings

    copies = root_folder(get_settings().home / "reduced", "predict")
    out = []
    for image in images:
        p = Path(image)
        if not p.exists():
            raise DataError(f"image {image} not found; pass the path of a JPEG, PNG, GIF, BMP or WebP file")
        probe = probe_image(p, reduced_dir=copies)
        if probe.reason:
            raise DataError(f"image {image} cannot be used ({probe.reason}: {probe.detail}); pass a readable image")
        out.append(probe.reduced_path or str(p.resolve()))
    return out


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
