"""Evaluate a trained run and write everything to Postgres.

Per target (artist, and style/genre for multi-task): per-class precision, recall, F1, support
and accuracy, and the confusion matrix; top-1 and top-3 artist accuracy; the open-set score on
paintings by artists outside the trained set (AUROC of the max probability, known vs unknown, and
the rejection rate at a threshold chosen on validation); same-artist verification pair AUC on
held-out pairs, seen and unseen artists separately.

Re-running an evaluation replaces the run's rows (one transaction).

A run is evaluated on the paintings of its dataset version that are still in their folder: when
an ingest found some gone after the version was made (even while the run trained), the summary's
``gone`` counts them by split and the report and the CLI say how many left.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from psycopg.types.json import Jsonb
from sklearn.metrics import confusion_matrix

from painting_ml.core import db
from painting_ml.data.derived import cached_paths, long_side_for
from painting_ml.data.versions import UNSEEN, load_items, target_labels
from painting_ml.learn.metrics import compute_class_metrics, open_set_scores, pair_auc, top_k_accuracy


def evaluate(run_id: int, url: str | None = None) -> dict[str, Any]:
    """Evaluate the run's best model on its test, validation and unseen paintings; store; summarise."""
    from painting_ml.learn.inference import infer, load_run_model

    rm = load_run_model(run_id, url)
    _, version_items = load_items(rm.version_id, url, history=True)
    items = [i for i in version_items if not i.gone]
    gone = {s: sum(i.gone and i.split == s for i in version_items) for s in ("train", "val", "test", UNSEEN)}
    classes = rm.classes
    splits = {s: [i for i in items if i.split == s] for s in ("val", "test", UNSEEN)}
    # The image-cache copies training read (every split was cached by the augment step): the
    # evaluation sees the same pixels and runs on any host that reaches the artifact store.
    long_side = long_side_for(int(rm.config["image_size"]))
    out = {s: infer(rm, cached_paths(its, long_side, url)) for s, its in splits.items()}
    test = splits["test"]
    labels = target_labels(test, classes)
    seed = int(rm.config.get("seed", 0))

    per_target: dict[str, dict[str, Any]] = {}
    confusion_rows: list[dict[str, Any]] = []
    metric_rows: list[dict[str, Any]] = []
    for t, names in classes.items():
        y, probs = np.asarray(labels[t]), out["test"][t]
        pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
        rows = compute_class_metrics(y, pred, names)
        metric_rows += [{"run": run_id, "target": t, **r} for r in rows]
        known = y >= 0
        cm = confusion_matrix(y[known], pred[known], labels=list(range(len(names))))
        confusion_rows += [{"run": run_id, "target": t, "true": names[a], "pred": names[b], "count": int(cm[a, b])}
                           for a in range(len(names)) for b in range(len(names)) if cm[a, b]]
        per_target[t] = {"accuracy": float((pred[known] == y[known]).mean()) if known.any() else 0.0,
                         "macro_f1": float(np.mean([r["f1"] for r in rows])),
                         "top3_accuracy": top_k_accuracy(y[known], probs[known], 3), "n": int(known.sum())}

    maxp = {s: out[s]["artist"].max(axis=1) if len(out[s]["artist"]) else np.zeros(0) for s in out}
    open_set = open_set_scores(maxp["val"], maxp["test"], maxp[UNSEEN])
    verification = {
        "seen": pair_auc([i.artist for i in test], out["test"]["artist"], out["test"]["embedding"], seed),
        "unseen": pair_auc([i.artist for i in splits[UNSEEN]], out[UNSEEN]["artist"], out[UNSEEN]["embedding"], seed),
    }
    artist = per_target["artist"]
    summary = {"run_id": run_id, "test_accuracy": artist["accuracy"], "macro_f1": artist["macro_f1"],
               "top3_accuracy": artist["top3_accuracy"], "n_test": len(test), "chance": 1.0 / len(classes["artist"]),
               "targets": per_target, "open_set": open_set, "verification": verification,
               "gone": {s: n for s, n in gone.items() if n}}

    names = classes["artist"]
    with db.connect(url) as conn:
        for stmt in ("delete_metrics", "delete_confusion", "delete_verification", "delete_predictions"):
            conn.execute(db.sql("runs", stmt), {"id": run_id})
        with conn.cursor() as cur:
            cur.executemany(db.sql("runs", "insert_metric"), metric_rows)
            if confusion_rows:
                cur.executemany(db.sql("runs", "insert_confusion"), confusion_rows)
            cur.executemany(db.sql("runs", "insert_verification"), [
                {"run": run_id, "subset": subset, "score": score, **v}
                for subset, by_score in verification.items() for score, v in by_score.items()])
            probs = out["test"]["artist"]
            with cur.copy(db.sql("runs", "copy_predictions")) as copy:
                for n, item in enumerate(test):
                    order = np.argsort(-probs[n])[:3]
                    others = {t: {"true": item.value(t), "predicted": classes[t][int(out["test"][t][n].argmax())]}
                              for t in classes if t != "artist"}
                    copy.write_row((run_id, item.filename, item.artist, names[int(order[0])], float(probs[n, order[0]]),
                                    Jsonb([[names[int(k)], float(probs[n, k])] for k in order]),
                                    Jsonb(others) if others else None))
        conn.execute(db.sql("runs", "finish_evaluation"), {
            "id": run_id, "acc": artist["accuracy"], "f1": artist["macro_f1"], "top3": artist["top3_accuracy"],
            "auroc": open_set["auroc"], "summary": Jsonb(summary)})
    return summary


def artist_table(run_id: int, url: str | None = None) -> list[dict[str, Any]]:
    """The run's per-artist metric rows, as stored."""
    with db.connect(url) as conn:
        return db.fetch_dicts(conn, db.sql("runs", "artist_metrics"), {"id": run_id})

