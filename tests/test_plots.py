"""Plots of a run: learning curves read well from one epoch to many."""

import pytest

from painting_ml.results.plots import curves_figure, learning_curves

pytestmark = pytest.mark.unit


def _epochs(n: int) -> list[dict]:
    return [{"epoch": e, "loss": 2.0 - 0.1 * e, "val_loss": 2.1 - 0.1 * e, "accuracy": 0.2 + 0.05 * e,
             "val_accuracy": 0.15 + 0.05 * e, "learning_rate": 1e-3} for e in range(1, n + 1)]


def test_a_one_epoch_run_shows_points_on_a_whole_epoch_axis(tmp_path):
    fig = curves_figure({"adam": _epochs(1), "sgd": _epochs(1)})
    loss, accuracy, lr = fig.axes[:3]
    for ax in (loss, accuracy, lr):
        assert ax.get_xlim() == (0.5, 1.5)  # one epoch, half an epoch either side
        assert [t for t in ax.get_xticks() if 0.5 <= t <= 1.5] == [1.0]
        assert all(line.get_marker() in ("o", "s") and line.get_markersize() >= 6 for line in ax.get_lines())
    assert loss.get_ylim()[0] == 0 and accuracy.get_ylim() == (0, 1)
    assert learning_curves({"adam": _epochs(1)}, tmp_path / "c.png").stat().st_size > 0


def test_many_epochs_keep_small_markers_and_integer_ticks():
    fig = curves_figure({"adam": _epochs(12)})
    loss = fig.axes[0]
    assert loss.get_xlim() == (0.5, 12.5)
    assert all(float(t).is_integer() for t in loss.get_xticks())
    assert {line.get_markersize() for line in loss.get_lines()} == {3}
