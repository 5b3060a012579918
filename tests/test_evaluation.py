import pytest

from painting_ml.evaluation import compute_artist_metrics


def test_per_artist_metrics_by_hand():
    # a: 2 of 3 right; b: 1 of 1 right, plus one a predicted as b; c: never predicted.
    y_true = [0, 0, 0, 1, 2]
    y_pred = [0, 0, 1, 1, 0]
    rows = {r["artist"]: r for r in compute_artist_metrics(y_true, y_pred, ["a", "b", "c"])}
    assert rows["a"]["precision"] == pytest.approx(2 / 3)
    assert rows["a"]["recall"] == pytest.approx(2 / 3) == rows["a"]["accuracy"]
    assert rows["b"]["precision"] == pytest.approx(0.5) and rows["b"]["recall"] == 1.0
    assert rows["b"]["f1"] == pytest.approx(2 / 3)
    assert rows["c"] == {"artist": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "accuracy": 0.0}
    assert [r["support"] for r in rows.values()] == [3, 1, 1]
