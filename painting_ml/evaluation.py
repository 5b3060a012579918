"""Evaluate a trained run on its test split and write per-artist metrics and predictions.

Re-running an evaluation replaces the run's metric and prediction rows (one transaction).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from painting_ml import db
from painting_ml.datasets import load_items


def compute_artist_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> list[dict]:
    """Per-artist precision, recall, F1, support and accuracy.

    Per-artist accuracy is the share of that artist's paintings attributed to them (equal to
    recall; kept as its own column because that is what the art teams ask for).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    out = []
    for i, artist in enumerate(labels):
        mask = y_true == i
        acc = float((y_pred[mask] == i).mean()) if mask.any() else 0.0
        out.append({"artist": artist, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                    "support": int(s[i]), "accuracy": acc})
    return out


def evaluate(run_id: int, url: str | None = None) -> dict:
    """Predict the run's test split with its best model; store metrics; return a summary."""
    import keras

    from painting_ml import models  # noqa: F401  (registers the custom layer for loading)
    from painting_ml.data import make_dataset

    with db.connect(url) as conn:
        run = conn.execute(db.sql("runs", "get_run"), {"id": run_id}).fetchone()
    if run is None:
        raise LookupError(f"run {run_id} does not exist")
    _, _, version_id, config, _, _, model_path = run
    if not model_path:
        raise LookupError(f"run {run_id} has no trained model yet; run the train step first")
    artists, items = load_items(version_id, url)
    test = [i for i in items if i.split == "test"]
    model = keras.models.load_model(model_path)
    ds = make_dataset([i.path for i in test], [i.label for i in test], image_size=int(config["image_size"]),
                      batch_size=int(config["batch_size"]), shuffle=False, seed=0, cache="none",
                      resize_mode=config.get("resize_mode", "crop"))
    probs = model.predict(ds, verbose=0)
    y_true = np.array([i.label for i in test])
    y_pred = probs.argmax(axis=1)
    metrics = compute_artist_metrics(y_true, y_pred, artists)
    accuracy = float((y_true == y_pred).mean())
    macro_f1 = float(np.mean([m["f1"] for m in metrics]))
    with db.connect(url) as conn:
        conn.execute(db.sql("runs", "delete_metrics"), {"id": run_id})
        with conn.cursor() as cur:
            cur.executemany(db.sql("runs", "insert_metric"), [{"run": run_id, **m} for m in metrics])
            cur.execute(db.sql("runs", "delete_predictions"), {"id": run_id})
            with cur.copy(db.sql("runs", "copy_predictions")) as copy:
                for item, pred, conf in zip(test, y_pred, probs.max(axis=1)):
                    copy.write_row((run_id, item.filename, item.artist, artists[int(pred)], float(conf)))
        conn.execute(db.sql("runs", "finish_evaluation"), {"id": run_id, "acc": accuracy, "f1": macro_f1})
    return {"run_id": run_id, "test_accuracy": accuracy, "macro_f1": macro_f1, "n_test": len(test),
            "chance": 1.0 / len(artists)}


def artist_table(run_id: int, url: str | None = None) -> list[dict]:
    """The run's per-artist metric rows, as stored."""
    with db.connect(url) as conn:
        return db.fetch_dicts(conn, db.sql("runs", "artist_metrics"), {"id": run_id})
