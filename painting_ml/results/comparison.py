"""Compare the runs of one sweep (the optimizer comparison): one plot of all their learning
curves, and the best run by validation accuracy (ties: lower validation loss, then lower id)."""

from __future__ import annotations

import shutil
from typing import Any

from painting_ml.core import db


def pick_best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """``runs``: dicts with ``run_id``, ``best_val_accuracy``, ``best_val_loss``."""
    if not runs:
        raise ValueError("no runs to compare")
    return min(runs, key=lambda r: (-(r["best_val_accuracy"] or 0.0), r["best_val_loss"] or float("inf"), r["run_id"]))


def compare_runs(run_ids: list[int], url: str | None = None) -> dict[str, Any]:
    """Plot all runs' curves together into the best run's folder (recorded as an artifact);
    return the best run id, the plot path and each run's figures."""
    from painting_ml.core.artifacts import record_artifact, run_folder
    from painting_ml.results.plots import learning_curves

    run_ids = sorted({int(r) for r in run_ids})
    with db.connect(url) as conn:
        runs = db.fetch_dicts(conn, db.sql("comparison", "runs"), {"ids": run_ids})
        series: dict[str, list[dict[str, Any]]] = {}
        for r in runs:
            rows = db.fetch_dicts(conn, db.sql("runs", "epochs_of_run"), {"id": r["run_id"]})
            series[f"run {r['run_id']} {r['optimizer']}"] = rows
    best = pick_best(runs)
    title = f"Comparison of runs {', '.join(map(str, run_ids))} (best: run {best['run_id']})"
    path = run_folder(best["run_dir"]) / "plots" / "comparison.png"
    learning_curves(series, path, title)
    with db.connect(url) as conn:
        for r in runs:  # each run's folder (and report) carries the comparison it was part of
            own = run_folder(r["run_dir"]) / "plots" / "comparison.png"
            if own != path:
                own.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, own)
            record_artifact(conn, r["run_id"], "comparison", own)
    return {"best_run_id": int(best["run_id"]), "plot": str(path),
            "runs": [{k: r[k] for k in ("run_id", "optimizer", "best_val_accuracy", "test_accuracy", "macro_f1")}
                     for r in runs]}
