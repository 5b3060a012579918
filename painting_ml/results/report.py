"""The per-run HTML report: config, dataset version, metrics tables, plots, mosaics and the
promotion decision, as one self-contained folder (``report.html`` with relative image links).

Every file written is recorded in ``artifacts`` (kind, bytes, sha256); re-rendering replaces.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from painting_ml.core import db
from painting_ml.core.artifacts import fetch_run_files, record_artifact, run_folder
from painting_ml.core.files import atomic_path
from painting_ml.results.mosaics import artist_slugs

if TYPE_CHECKING:
    import jinja2

TEMPLATES = Path(__file__).with_name("templates")
#: A database row, read by name.
Row: TypeAlias = dict[str, Any]


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    # autoescape: artist names, titles and config values come from user data.
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_report(run_id: int, url: str | None = None) -> Path:
    """Render plots and ``report.html`` into the run folder; record them; return the HTML path."""
    from painting_ml.results.plots import confusion_heatmap, confusion_matrix_from_rows, f1_bars, learning_curves

    with db.connect(url) as conn:
        found = db.fetch_dicts(conn, db.sql("report", "run_detail"), {"id": run_id})
        if not found:
            raise LookupError(f"run {run_id} does not exist")
        run = found[0]
        epochs = db.fetch_dicts(conn, db.sql("runs", "epochs_of_run"), {"id": run_id})
        metrics = db.fetch_dicts(conn, db.sql("report", "class_metrics"), {"id": run_id})
        confusion = db.fetch_dicts(conn, db.sql("report", "confusion"), {"id": run_id})
        verification = db.fetch_dicts(conn, db.sql("report", "verification"), {"id": run_id})
        promotions = db.fetch_dicts(conn, db.sql("report", "promotions"), {"id": run_id})
        validation = db.fetch_one(conn, db.sql("validation", "latest_of_version"), {"id": run["version_id"]})
        overrides = db.fetch_one(conn, db.sql("reviews", "overrides_applied"), {"id": run["version_id"]},
                                 required=True)["overrides_applied"]
    # Plots and mosaics other tasks (maybe on other hosts) made are brought here from the store.
    fetch_run_files(run_id, url, kinds=("comparison", "mosaic_real", "mosaic_predicted", "mosaic_second_look"))
    run_dir = run_folder(run["run_dir"])
    classes = run["classes"] or {}
    plots_dir = run_dir / "plots"
    plots: list[tuple[str, str]] = []
    if epochs:
        learning_curves({f"run {run_id}": epochs}, plots_dir / "learning_curves.png",
                        f"Run {run_id}: loss, accuracy and learning rate")
        plots.append(("plots/learning_curves.png", "Learning curves (train solid, validation dashed)"))
    for target, names in classes.items():
        rows = [r for r in confusion if r["target"] == target]
        if rows:
            confusion_heatmap(names, confusion_matrix_from_rows(names, rows), plots_dir / f"confusion_{target}.png",
                              f"Confusion matrix — {target}")
            plots.append((f"plots/confusion_{target}.png", f"Confusion matrix ({target})"))
    if (plots_dir / "comparison.png").is_file():
        plots.append(("plots/comparison.png", "Optimizer comparison: every run of the sweep"))
    artist_rows = [r for r in metrics if r["target"] == "artist"]
    if artist_rows:
        f1_bars(artist_rows, plots_dir / "f1_artist.png", "F1 per artist (test)")
        plots.append(("plots/f1_artist.png", "F1 per artist"))

    mosaics: list[tuple[str, list[str]]] = []
    slugs = artist_slugs(classes.get("artist", []))
    for artist, slug in slugs.items():
        pair = [f"mosaics/{kind}_{slug}.png" for kind in ("real", "predicted")]
        if all((run_dir / p).is_file() for p in pair):
            mosaics.append((artist, pair))

    # Written by the attribution of the catalog (painting_ml.results.attribution), when it has run.
    second_look = sorted(f"second_look/{p.name}" for p in (run_dir / "second_look").glob("*.png"))
    page = _page(run, epochs, metrics, verification, promotions, plots, mosaics, validation, second_look, overrides)
    path = run_dir / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    with db.connect(url) as conn:
        for rel, _ in plots:
            if rel != "plots/comparison.png":  # recorded by the comparison step as kind "comparison"
                record_artifact(conn, run_id, "plot", run_dir / rel)
        record_artifact(conn, run_id, "report", path)
    return path


def _page(run: Row, epochs: list[Row], metrics: list[Row], verification: list[Row], promotions: list[Row],
          plots: list[tuple[str, str]], mosaics: list[tuple[str, list[str]]], validation: Row | None = None,
          second_look: Sequence[str] = (), overrides: int = 0) -> str:
    """Fill ``templates/report.html.j2``."""
    summary = run["summary"] or {}
    kpis = [("artist test accuracy", run["test_accuracy"]), ("top-3", run["top3_accuracy"]),
            ("macro-F1", run["macro_f1"]), ("chance", summary.get("chance")), ("open-set AUROC", run["open_set_auroc"])]
    kpis += [(f"{t} accuracy", m.get("accuracy")) for t, m in (summary.get("targets") or {}).items() if t != "artist"]
    counts = run["artist_counts"] or {}
    metrics_by_target: dict[str, list[Row]] = {}
    for r in metrics:
        metrics_by_target.setdefault(r["target"], []).append(r)
    return _environment().get_template("report.html.j2").render(
        run=run, config=run["config"] or {}, kpis=kpis, promotion=promotions[0] if promotions else None,
        split_counts=[{"artist": a, **c} for a, c in counts.items() if a != "unseen"], unseen=counts.get("unseen"),
        metrics_by_target=metrics_by_target, open_set=summary.get("open_set") or {}, verification=verification,
        epochs=epochs, plots=plots, mosaics=[(artist, real, predicted) for artist, (real, predicted) in mosaics],
        validation=_validation_view(validation), second_look=list(second_look), gone=summary.get("gone") or {},
        overrides=overrides,
    )


def _validation_view(validation: Row | None) -> dict[str, Any] | None:
    """The data-quality gate's row of the run's dataset version, shaped for the template."""
    if not validation:
        return None
    figures = validation["figures"] or {}
    drift = figures.get("drift") or {}
    sides = figures.get("image_side") or {}
    rows = [("reject rate", figures.get("reject_rate")), ("rejected CSV rows", figures.get("rejected")),
            ("usable paintings", figures.get("usable")), ("image short side p10 / median / p90 (px)",
            " / ".join("–" if sides.get(k) is None else f"{sides[k]:.0f}" for k in ("p10", "median", "p90")))]
    if (copies := figures.get("duplicates")) is not None:
        rows += [("copies of another painting in the version", copies.get("copies")),
                 ("conflicting duplicate groups excluded", copies.get("excluded_conflicting_groups"))]
    if drift:
        rows += [("compared with dataset version", validation["previous_version_id"]),
                 ("largest artist count change", drift.get("max_count_change")),
                 ("artists added / removed",
                  f"{drift.get('artists_added') or '–'} / {drift.get('artists_removed') or '–'}"),
                 ("median image side change", drift.get("median_side_change"))]
    else:
        rows.append(("drift", "no earlier version of this selection to compare with"))
    return {"status": validation["status"], "validated_at": validation["validated_at"], "figures": rows,
            "findings": validation["findings"] or [], "thresholds": validation["thresholds"] or {}}
