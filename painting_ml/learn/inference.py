"""Use a trained run: class probabilities and embeddings for images, top-k prediction, and
same-artist verification of two paintings.

The model used by default is the champion (``champions`` table, written by the promotion gate),
falling back to the latest evaluated run while no champion exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from painting_ml.core import db
from painting_ml.core.errors import DataError, PaintingMLError
from painting_ml.core.settings import get_settings
from painting_ml.learn.metrics import FloatArray, pair_scores, top_k


@dataclass
class RunModel:
    run_id: int
    model: Any             # keras.Model with outputs {target..., "embedding"} (Keras has no type hints)
    classes: dict[str, list[str]]
    config: dict[str, Any]
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
        run = db.fetch_one(conn, db.sql("runs", "get_run"), {"id": run_id})
    if run is None:
        raise PaintingMLError(f"run {run_id} does not exist; `painting-ml runs` lists the runs")
    if not run["model_path"]:
        raise PaintingMLError(f"run {run_id} has no saved model (not trained yet); train it first")
    from painting_ml.core.store import get_store

    model_file = get_store().fetch(run["model_path"])  # StoreError: one line naming the key
    classes = run["classes"] or json.loads(get_store().fetch(f"{run['run_dir']}/classes.json").read_text())
    import keras

    from painting_ml.learn.models import EMBEDDING_LAYER

    # Inference needs no optimizer, loss or metrics: not compiling skips restoring them.
    model = keras.models.load_model(model_file, compile=False)
    outputs = {t: model.get_layer(t).output for t in classes}
    outputs["embedding"] = model.get_layer(EMBEDDING_LAYER).output
    scorer = keras.Model(model.input, outputs)  # one image input: called with the images alone
    scorer.run_eagerly = get_settings().run_eagerly
    return RunModel(run_id, scorer, classes, run["config"], run["dataset_version_id"])


def infer(rm: RunModel, paths: Sequence[str], batch_size: int | None = None,
          grey: bool = False) -> dict[str, FloatArray]:
    """Probabilities per target and embeddings for image files (in order); ``grey``: of the
    images without their colours."""
    if not paths:
        return {**{t: np.zeros((0, len(c))) for t, c in rm.classes.items()}, "embedding": np.zeros((0, 0))}
    return next(infer_chunks(rm, paths, len(paths), batch_size, grey))


def infer_chunks(rm: RunModel, paths: Sequence[str], chunk: int, batch_size: int | None = None,
                 grey: bool = False) -> Iterator[dict[str, FloatArray]]:
    """Probabilities per target and embeddings for image files, ``chunk`` files at a time, in
    order (the last chunk may be shorter).

    One input pipeline feeds every chunk, so decoding keeps running ahead of the model (tf.data
    prefetch) while the caller handles a chunk, and the model is called batch by batch with
    ``predict_on_batch``, which sets nothing up per call (``predict`` builds an epoch iterator and
    callbacks each time). The batches of a call share one shape: past the first batch, a short last
    one is padded with blank images whose outputs are dropped, so the backend traces (TensorFlow)
    or compiles (JAX) the model once, not again for the last batch. A painting's outputs do not
    depend on the rest of its batch.

    Args:
        rm: the loaded run model.
        paths: image files the decoder reads (see :func:`checked_image_paths`).
        chunk: files per yielded result.
        batch_size: images per model call (default: the run's training batch size).
        grey: the images without their colours (``make_dataset(grey=True)``).

    Yields:
        ``{target: probabilities, "embedding": embeddings}`` for the next ``chunk`` files.
    """
    from painting_ml.data.inputs import make_dataset

    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}")
    if not paths:
        return
    size = batch_size or int(rm.config["batch_size"])
    ds = make_dataset(list(paths), None, image_size=int(rm.config["image_size"]), batch_size=size, shuffle=False,
                      seed=0, cache="none", resize_mode=rm.config.get("resize_mode", "crop"), grey=grey)
    held: list[dict[str, FloatArray]] = []
    count = 0
    for images in ds.as_numpy_iterator():
        n = len(images)
        if n < size and len(paths) > size:
            images = np.concatenate([images, np.zeros((size - n, *images.shape[1:]), images.dtype)])
        held.append({k: np.asarray(v)[:n] for k, v in rm.model.predict_on_batch(images).items()})
        count += n
        while count >= chunk:
            out = {k: np.concatenate([h[k] for h in held]) for k in held[0]}
            yield {k: v[:chunk] for k, v in out.items()}
            count -= chunk
            held = [{k: v[chunk:] for k, v in out.items()}] if count else []
    if count:
        yield {k: np.concatenate([h[k] for h in held]) for k in held[0]}


def checked_image_paths(images: Sequence[str]) -> list[str]:
    """Each image must exist and be one training's decoder reads the same way (the decoder
    contract of :mod:`painting_ml.data.images`); a huge or EXIF-rotated one is replaced by a
    converted copy. Copies live in ``reduced/<hash of "predict">/<sha256 of the file>.jpg``, a
    folder of their own: a predicted file can never replace a dataset image's copy."""
    from painting_ml.core.settings import get_settings
    from painting_ml.data.images import probe_image, root_folder

    copies = root_folder(get_settings().home / "reduced", "predict")
    out: list[str] = []
    for image in images:
        p = Path(image)
        if not p.exists():
            raise DataError(f"image {image} not found; pass the path of a JPEG, PNG, GIF, BMP or WebP file")
        probe = probe_image(p, reduced_dir=copies)
        if probe.reason:
            raise DataError(f"image {image} cannot be used ({probe.reason}: {probe.detail}); pass a readable image")
        out.append(probe.reduced_path or str(p.resolve()))
    return out


def predict(images: Sequence[str], run_id: int | None = None, k: int = 3,
            url: str | None = None) -> dict[str, Any]:
    """Top-k artists (and the other targets' best class) for each image."""
    paths = checked_image_paths(images)
    rm = load_run_model(run_id, url)
    out = infer(rm, paths)
    results: list[dict[str, Any]] = []
    for n, image in enumerate(images):
        entry: dict[str, Any] = {"image": image, "artists": [{"artist": a, "probability": p}
                                             for a, p in top_k(out["artist"][n], rm.classes["artist"], k)]}
        for t in rm.classes:
            if t != "artist":
                name, p = top_k(out[t][n], rm.classes[t], 1)[0]
                entry[t] = {"label": name, "probability": p}
        results.append(entry)
    return {"run_id": rm.run_id, "predictions": results}


def verify(image_a: str, image_b: str, run_id: int | None = None, url: str | None = None) -> dict[str, Any]:
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
