"""Plots of a run (or several): learning curves, confusion-matrix heatmap, per-artist F1 bars.

Matplotlib with the non-interactive Agg backend; every figure is written atomically (temp file +
rename) as PNG. Every label and title goes through :func:`~painting_ml.results.fonts.displayable`,
so names in scripts the font lacks are transliterated, never drawn as boxes.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from painting_ml.core.files import atomic_path
from painting_ml.results.fonts import displayable

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot() -> types.ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def learning_curves(series: Mapping[str, Sequence[Mapping[str, Any]]], path: Path,
                    title: str = "Learning curves") -> Path:
    """Loss, accuracy and learning rate per epoch; one colour per run (train solid, validation
    dashed), so several runs — an optimizer comparison — share one figure.

    Every epoch is a marker, so a one-epoch run shows as points, and the epoch axis spans whole
    epochs with half an epoch either side (never a sliver around one point); loss starts at 0.

    ``series``: ``{label: [{"epoch", "loss", "val_loss", "accuracy", "val_accuracy",
    "learning_rate"}, ...]}``.
    """
    return _save(curves_figure(series, title), path)


def curves_figure(series: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "Learning curves") -> Figure:
    """The figure :func:`learning_curves` writes (its three axes: loss, accuracy, learning rate)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    epochs = [r["epoch"] for rows in series.values() for r in rows]
    # Few epochs: larger markers, as they are all there is to see.
    ms = 6 if len(set(epochs)) <= 3 else 3
    for k, (label, rows) in enumerate(series.items()):
        color = f"C{k % 10}"
        ep = [r["epoch"] for r in rows]
        for ax, key in ((axes[0], "loss"), (axes[1], "accuracy")):
            ax.plot(ep, [r.get(key) for r in rows], "-o", color=color, ms=ms, label=displayable(f"{label} train"))
            ax.plot(ep, [r.get(f"val_{key}") for r in rows], "--s", color=color, ms=ms, mfc="none",
                    label=displayable(f"{label} val"))
        axes[2].plot(ep, [r.get("learning_rate") for r in rows], "-o", color=color, ms=ms, label=displayable(label))
    from matplotlib.ticker import MaxNLocator

    for ax, name in zip(axes, ("loss", "accuracy", "learning rate"), strict=True):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if epochs:
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, axes[0].get_ylim()[1] * 1.05)  # from 0, with room for the top marker
    axes[1].set_ylim(0, 1)
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.suptitle(displayable(title))
    return fig


def confusion_heatmap(names: Sequence[str], matrix: NDArray[np.integer[Any]], path: Path,
                      title: str = "Confusion matrix") -> Path:
    """Counts of true (rows) vs predicted (columns) classes, with names on both axes."""
    plt = _pyplot()
    n = len(names)
    size = max(4.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(matrix, cmap="Blues")
    names = [displayable(x) for x in names]
    ax.set_xticks(range(n), labels=names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > top / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(displayable(title))
    return _save(fig, path)


def f1_bars(rows: Sequence[Mapping[str, Any]], path: Path, title: str = "F1 per artist") -> Path:
    """Horizontal bars of each class's F1 (sorted), with its support."""
    plt = _pyplot()
    rows = sorted(rows, key=lambda r: r["f1"])
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(rows) + 1)))
    # Bars by position, labelled after: two names that transliterate alike stay two bars.
    ax.barh(range(len(rows)), [r["f1"] for r in rows], color="C0")
    ax.set_yticks(range(len(rows)), labels=[displayable(r["label"]) for r in rows])
    for k, r in enumerate(rows):
        ax.text(min(r["f1"] + 0.01, 0.9), k, f"{r['f1']:.2f} (n={r['support']})", va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(displayable(title))
    return _save(fig, path)


def confusion_matrix_from_rows(names: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> NDArray[np.int_]:
    """Rebuild the square matrix from stored ``confusion`` rows."""
    index = {n: k for k, n in enumerate(names)}
    m = np.zeros((len(names), len(names)), dtype=int)
    for r in rows:
        if r["true_label"] in index and r["predicted_label"] in index:
            m[index[r["true_label"]], index[r["predicted_label"]]] = r["count"]
    return m
