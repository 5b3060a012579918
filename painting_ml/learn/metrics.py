"""Pure metric functions over labels, probabilities and embeddings (numpy + scikit-learn).

Used by evaluation (test-set figures), inference (top-k, same-artist verification) and the
promotion gate; no database, no Keras.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

OPEN_SET_ACCEPT = 0.95  # the threshold keeps this share of known-artist validation paintings
MAX_PAIRS = 20_000

#: Probabilities, scores or embeddings: one row per painting.
FloatArray = NDArray[np.floating[Any]]
#: Indices into an array (pair positions, class ids).
IndexArray = NDArray[np.integer[Any]]


class ClassMetrics(TypedDict):
    """One class's test figures, as stored in ``class_metrics``."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int
    accuracy: float


class OpenSetScores(TypedDict):
    """Known-vs-unknown separation (all None but the counts when either side is empty)."""

    auroc: float | None
    threshold: float | None
    unseen_rejection_rate: float | None
    known_rejection_rate: float | None
    n_known: int
    n_unseen: int


class PairAuc(TypedDict):
    """Verification AUC of one pair score (None when the pairs are all same-artist or all not)."""

    auc: float | None
    n_pairs: int
    n_positive: int


def compute_class_metrics(y_true: ArrayLike, y_pred: ArrayLike, labels: Sequence[str]) -> list[ClassMetrics]:
    """Per-class precision, recall, F1, support and accuracy; samples labelled -1 (unknown) are left out.

    Per-class accuracy is the share of that class's paintings named correctly (equal to recall;
    kept as its own column because that is what the art teams ask for).
    """
    true_all, pred_all = np.asarray(y_true), np.asarray(y_pred)
    known = true_all >= 0
    true, pred = true_all[known], pred_all[known]
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(true, pred, labels=idx, zero_division=0)
    out: list[ClassMetrics] = []
    for i, name in enumerate(labels):
        mask = true == i
        acc = float((pred[mask] == i).mean()) if mask.any() else 0.0
        out.append({"label": name, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                    "support": int(s[i]), "accuracy": acc})
    return out


def top_k_accuracy(y_true: ArrayLike, probs: FloatArray, k: int) -> float:
    """Share of samples whose true class is among the ``k`` most probable."""
    true = np.asarray(y_true)
    if len(true) == 0:
        return 0.0
    top = np.argsort(-probs, axis=1)[:, :k]
    return float(np.mean([y in row for y, row in zip(true, top, strict=True)]))


def open_set_scores(val_known: FloatArray, test_known: FloatArray, unseen: FloatArray,
                    accept: float = OPEN_SET_ACCEPT) -> OpenSetScores:
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


def pair_from_index(k: ArrayLike, n: int) -> tuple[IndexArray, IndexArray]:
    """The (i, j), i < j, at positions ``k`` of the row-major upper triangle of an n x n matrix."""
    pos = np.asarray(k, dtype=np.int64)
    b = 2 * n - 1
    i = np.floor((b - np.sqrt(b * b - 8.0 * pos)) / 2).astype(np.int64)
    start = i * (2 * n - i - 1) // 2
    # Float rounding can put i one row off at huge n: step it back into place.
    over = start > pos
    i[over] -= 1
    start = i * (2 * n - i - 1) // 2
    under = pos - start >= n - 1 - i
    i[under] += 1
    start = i * (2 * n - i - 1) // 2
    return i, pos - start + i + 1


def sample_pairs(groups: Sequence[str], max_pairs: int = MAX_PAIRS,
                 seed: int = 0) -> tuple[IndexArray, IndexArray]:
    """Index pairs (i < j) over ``groups``: all of them, or a seeded sample of ``max_pairs``.

    Memory is O(pairs returned), not O(n²): the sample is drawn as positions in the upper triangle
    (numpy draws a small sample of a huge range without materialising it) and mapped to (i, j).
    """
    n = len(groups)
    total = n * (n - 1) // 2
    if total <= max_pairs:
        return np.triu_indices(n, k=1)
    k = np.sort(np.random.default_rng(seed).choice(total, size=max_pairs, replace=False))
    return pair_from_index(k, n)


def pair_auc(groups: Sequence[str], probs: FloatArray, emb: FloatArray, seed: int = 0) -> dict[str, PairAuc]:
    """Verification AUC of each pair score over held-out pairs of ``groups`` (artist names)."""
    names = np.asarray(groups)
    i, j = sample_pairs(list(groups), seed=seed)
    same = (names[i] == names[j]).astype(int)
    scores = (pair_scores(probs[i], probs[j], emb[i], emb[j]) if len(i)
              else {"prob_product": np.zeros(0), "embedding_cosine": np.zeros(0)})
    out: dict[str, PairAuc] = {}
    for name, s in scores.items():
        auc = float(roc_auc_score(same, s)) if 0 < same.sum() < len(same) else None
        out[name] = {"auc": auc, "n_pairs": int(len(same)), "n_positive": int(same.sum())}
    return out


def pair_scores(probs_a: FloatArray, probs_b: FloatArray, emb_a: FloatArray,
                emb_b: FloatArray) -> dict[str, FloatArray]:
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


def top_k(probs: FloatArray, names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable names of one row of probabilities, most probable first."""
    order = np.argsort(-probs)[:k]
    return [(names[i], float(probs[i])) for i in order]
