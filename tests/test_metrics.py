import numpy as np
import pytest

from painting_ml.learn.metrics import compute_class_metrics, open_set_scores, pair_auc, sample_pairs, top_k_accuracy

pytestmark = pytest.mark.unit


def test_per_class_metrics_by_hand():
    # a: 2 of 3 right; b: 1 of 1 right, plus one a predicted as b; c: never predicted.
    y_true = [0, 0, 0, 1, 2]
    y_pred = [0, 0, 1, 1, 0]
    rows = {r["label"]: r for r in compute_class_metrics(y_true, y_pred, ["a", "b", "c"])}
    assert rows["a"]["precision"] == pytest.approx(2 / 3)
    assert rows["a"]["recall"] == pytest.approx(2 / 3) == rows["a"]["accuracy"]
    assert rows["b"]["precision"] == pytest.approx(0.5) and rows["b"]["recall"] == 1.0
    assert rows["b"]["f1"] == pytest.approx(2 / 3)
    assert rows["c"] == {"label": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "accuracy": 0.0}
    assert [r["support"] for r in rows.values()] == [3, 1, 1]


def test_unknown_labels_are_left_out_of_metrics():
    rows = {r["label"]: r for r in compute_class_metrics([0, -1, 1, -1], [0, 1, 1, 0], ["a", "b"])}
    assert rows["a"]["support"] == 1 and rows["b"]["support"] == 1
    assert rows["a"]["precision"] == 1.0 and rows["b"]["precision"] == 1.0


def test_top_k_accuracy():
    probs = np.array([[0.5, 0.3, 0.2, 0.0],   # true 1: second -> top-1 miss, top-3 hit
                      [0.1, 0.2, 0.3, 0.4],   # true 0: last -> miss both
                      [0.7, 0.1, 0.1, 0.1]])  # true 0: hit both
    assert top_k_accuracy([1, 0, 0], probs, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy([1, 0, 0], probs, 3) == pytest.approx(2 / 3)


def test_open_set_scores_perfect_and_threshold_from_validation():
    val = np.linspace(0.6, 1.0, 21)
    test = np.array([0.9, 0.95, 0.99, 0.62])
    unseen = np.array([0.3, 0.4, 0.5])
    s = open_set_scores(val, test, unseen, accept=0.95)
    assert s["auroc"] == 1.0
    assert s["threshold"] == pytest.approx(np.quantile(val, 0.05))
    assert s["unseen_rejection_rate"] == 1.0 and s["known_rejection_rate"] == 0.0
    assert open_set_scores(val, test, np.zeros(0))["auroc"] is None


def test_sample_pairs_all_or_capped():
    i, j = sample_pairs(list("abcd"))
    assert len(i) == 6 and np.all(i < j)
    i, j = sample_pairs(list(range(100)), max_pairs=50, seed=3)
    assert len(i) == 50 and len(set(zip(i, j, strict=True))) == 50
    assert np.array_equal(sample_pairs(list(range(100)), max_pairs=50, seed=3)[0], i)


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_pair_positions_map_to_the_upper_triangle_in_order(n):
    from painting_ml.learn.metrics import pair_from_index

    i, j = pair_from_index(np.arange(n * (n - 1) // 2), n)
    ti, tj = np.triu_indices(n, k=1)
    assert np.array_equal(i, ti) and np.array_equal(j, tj)


def test_pair_sampling_memory_does_not_grow_with_the_set():
    import tracemalloc

    n = 200_000  # 2e10 pairs: materialising them (the old way) would take ~300 GB
    tracemalloc.start()
    i, j = sample_pairs(range(n), max_pairs=20_000, seed=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    pairs = set(zip(i.tolist(), j.tolist(), strict=True))
    assert len(i) == 20_000 and np.all(i < j) and np.all(j < n) and len(pairs) == 20_000
    assert peak < 50 * 2**20


def test_pair_auc_separates_same_artist_pairs():
    groups = ["x", "x", "y", "y"]
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    out = pair_auc(groups, probs, emb)
    assert out["prob_product"] == {"auc": 1.0, "n_pairs": 6, "n_positive": 2}
    assert out["embedding_cosine"]["auc"] == 1.0
    assert pair_auc(["x", "x"], probs[:2], emb[:2])["prob_product"]["auc"] is None  # no negative pair
