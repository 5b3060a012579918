"""Evaluate a trained run and write everything to Postgres.

Per target (artist, and style/genre for multi-task): per-class precision, recall, F1, support
and accuracy, and the confusion matrix; top-1 and top-3 artist accuracy; the open-set score on
paintings by artists outside the trained set (AUROC of the max probability, known vs unknown, and
the rejection rate at a threshold chosen on validation); same-artist verification pair AUC on
held-out pairs, seen and unseen artists separately.

Re-running an evaluation replaces the run's rows (one transaction).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from psycopg.types.json import Jsonb
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

from painting_ml import db
from painting_ml.datasets import UNSEEN, load_items, target_labels

OPEN_SET_ACCEPT = 0.95  # the threshold keeps this share of known-artist validation paintings
MAX_PAIRS = 20_000


def compute_class_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> list[dict]:
    """Per-class precision, recall, F1, support and accuracy; samples labelled -1 (unknown) are left out.

    Per-class accuracy is the share of that class's paintings named correctly (equal to recall;
    kept as its own column because that is what the art teams ask for).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    known = y_true >= 0
    y_true, y_pred = y_true[known], y_pred[known]
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    out = []
    for i, name in enumerate(labels):
        mask = y_true == i
        acc = float((y_pred[mask] == i).mean()) if mask.any() else 0.0
        out.append({"label": name, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                    "support": int(s[i]), "accuracy": acc})
    return out


def top_k_accuracy(y_true: Sequence[int], probs: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the ``k`` most probable."""
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return 0.0
    top = np.argsort(-probs, axis=1)[:, :k]
    return float(np.mean([y in row for y, row in zip(y_true, top)]))


def open_set_scores(val_known: np.ndarray, test_known: np.ndarray, unseen: np.ndarray,
                    accept: float = OPEN_SET_ACCEPT) -> dict:
    """Known-vs-unknown separation by max class probability.

    AUROC treats test paintings of trained artists as positives and paintings of other artists as
    negatives. The threshold is the (1 - accept) quantile of validation max-probabilities, so about
    ``accept`` of known paintings pass; the rejection rates say what it does on test and unseen.
    """
    if len(unseen) == 0 or len(test_known) == 0:
        return {"auroc": None, "threshold": None, "unseen_rejection_rate": None,
                "known_rejection_rate": None, "n_known": int(len(test_known)), "n_unseen": int(len(unseen))}
    y = np.r_[np.ones(len(test_known)), np.zeros(len(unseen))]
    auroc = float(roc_auc_score(y, np.r_[test_known, unseen]))
    threshold = float(np.quantile(val_known, 1 - accept)) if len(val_known) else 0.0
    return {"auroc": auroc, "threshold": threshold,
            "unseen_rejection_rate": float(np.mean(unseen < threshold)),
            "known_rejection_rate": float(np.mean(test_known < threshold)),
            "n_known": int(len(test_known)), "n_unseen": int(len(unseen))}


def sample_pairs(groups: Sequence[str], max_pairs: int = MAX_PAIRS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) over ``groups``: all of them, or a seeded sample of ``max_pairs``."""
    n = len(groups)
    i, j = np.triu_indices(n, k=1)
    if len(i) > max_pairs:
        pick = np.sort(np.random.default_rng(seed).choice(len(i), size=max_pairs, replace=False))
        i, j = i[pick], j[pick]
    return i, j


def pair_auc(groups: Sequence[str], probs: np.ndarray, emb: np.ndarray, seed: int = 0) -> dict[str, dict]:
    """Verification AUC of each pair score over held-out pairs of ``groups`` (artist names)."""
    from painting_ml.inference import pair_scores

    groups = np.asarray(groups)
    i, j = sample_pairs(list(groups), seed=seed)
    same = (groups[i] == groups[j]).astype(int)
    scores = pair_scores(probs[i], probs[j], emb[i], emb[j]) if len(i) else {"prob_product": [], "embedding_cosine": []}
    out = {}
    for name, s in scores.items():
        auc = float(roc_auc_score(same, s)) if 0 < same.sum() < len(same) else None
        out[name] = {"auc": auc, "n_pairs": int(len(same)), "n_positive": int(same.sum())}
    return out


def evaluate(run_id: int, url: str | None = None) -> dict:
    """Evaluate the run's best model on its test, validation and unseen paintings; store; summarise."""
    from painting_ml.inference import infer, load_run_model

    rm = load_run_model(run_id, url)
    _, items = load_items(rm.version_id, url)
    classes = rm.classes
    splits = {s: [i for i in items if i.split == s] for s in ("val", "test", UNSEEN)}
    out = {s: infer(rm, [i.path for i in its]) for s, its in splits.items()}
    test = splits["test"]
    labels = target_labels(test, classes)
    seed = int(rm.config.get("seed", 0))

    per_target, confusion_rows, metric_rows = {}, [], []
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
               "targets": per_target, "open_set": open_set, "verification": verification}

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


def artist_table(run_id: int, url: str | None = None) -> list[dict]:
    """The run's per-artist metric rows, as stored."""
    with db.connect(url) as conn:
        return db.fetch_dicts(conn, db.sql("runs", "artist_metrics"), {"id": run_id})

