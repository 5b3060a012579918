"""The per-run HTML report: config, dataset version, metrics tables, plots, mosaics and the
promotion decision, as one self-contained folder (``report.html`` with relative image links).

Every file written is recorded in ``artifacts`` (kind, bytes, sha256); re-rendering replaces.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from painting_ml import db
from painting_ml.fileio import atomic_path
from painting_ml.mosaics import artist_slugs, record_artifact

CSS = """
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{margin-bottom:0} .sub{color:#666;margin-top:4px} table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left} .kpi{display:inline-block;margin:0 18px 12px 0;padding:8px 14px;
background:#f6f8fa;border-radius:6px} .kpi b{display:block;font-size:20px} img{max-width:100%;border:1px solid #eee}
.ok{color:#2e7d32} .no{color:#c62828} pre{background:#f6f8fa;padding:8px;font-size:12px;overflow:auto}
.mosaics{display:grid;grid-template-columns:1fr 1fr;gap:12px}
"""


def _e(v) -> str:
    return html.escape(str(v))


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return _e(v)


def table(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(rel: str, alt: str) -> str:
    return f'<figure><img src="{_e(rel)}" alt="{_e(alt)}"><figcaption>{_e(alt)}</figcaption></figure>'


def render_report(run_id: int, url: str | None = None) -> Path:
    """Render plots and ``report.html`` into the run folder; record them; return the HTML path."""
    from painting_ml.plots import confusion_heatmap, confusion_matrix_from_rows, f1_bars, learning_curves

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
    run_dir = Path(run["run_dir"])
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

    mosaics = []
    slugs = artist_slugs(classes.get("artist", []))
    for artist, slug in slugs.items():
        pair = [f"mosaics/{kind}_{slug}.png" for kind in ("real", "predicted")]
        if all((run_dir / p).is_file() for p in pair):
            mosaics.append((artist, pair))

    page = _page(run, epochs, metrics, verification, promotions, plots, mosaics)
    path = run_dir / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    with db.connect(url) as conn:
        for rel, _ in plots:
            if rel != "plots/comparison.png":  # recorded by the comparison step as kind "comparison"
                record_artifact(conn, run_id, "plot", run_dir / rel)
        record_artifact(conn, run_id, "report", path)
    return path


def _page(run, epochs, metrics, verification, promotions, plots, mosaics) -> str:
    s = run["summary"] or {}
    cfg = run["config"] or {}
    kpis = [("artist test accuracy", run["test_accuracy"]), ("top-3", run["top3_accuracy"]),
            ("macro-F1", run["macro_f1"]), ("chance", s.get("chance")), ("open-set AUROC", run["open_set_auroc"])]
    for t, m in (s.get("targets") or {}).items():
        if t != "artist":
            kpis.append((f"{t} accuracy", m.get("accuracy")))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>painting_ml run {run['id']}</title><style>{CSS}</style></head><body>",
        f"<h1>Run {run['id']} — {_e(cfg.get('backbone', ''))}, {_e(', '.join(cfg.get('targets', ['artist'])))}</h1>",
        f"<p class='sub'>status {_e(run['status'])} · key <code>{_e(run['run_key'])}</code> · started "
        f"{_e(run['started_at'])} · finished {_e(run['finished_at'])}</p>",
        "".join(f"<div class='kpi'>{_e(k)}<b>{_fmt(v)}</b></div>" for k, v in kpis),
    ]
    parts.append("<h2>Promotion</h2>")
    if promotions:
        p = promotions[0]
        verdict = "<b class='ok'>promoted to champion</b>" if p["promoted"] else "<b class='no'>not promoted</b>"
        parts.append(f"<p>{verdict} (candidate macro-F1 {_fmt(p['candidate_f1'])}, champion "
                     f"{_fmt(p['champion_f1'])}, champion run {_fmt(p['champion_run_id'])})</p><ul>"
                     + "".join(f"<li>{_e(r)}</li>" for r in p["reasons"]) + "</ul>")
    else:
        parts.append("<p>No promotion decision for this run.</p>")
    parts.append(f"<h2>Dataset version {run['version_id']}</h2><p class='sub'>content hash "
                 f"<code>{_e(run['content_hash'][:16])}</code>, created {_e(run['version_created_at'])}</p>")
    counts = run["artist_counts"] or {}
    parts.append(table([{"artist": a, **c} for a, c in counts.items() if a != "unseen"], ["artist", "train", "val", "test"]))
    if "unseen" in counts:
        parts.append(f"<p>Unseen-artist set: {_fmt(counts['unseen'].get('paintings'))} paintings by "
                     f"{_fmt(counts['unseen'].get('artists'))} artists outside the selection.</p>")
    parts.append("<h2>Per-class test metrics</h2>")
    for target in dict.fromkeys(r["target"] for r in metrics):
        parts.append(f"<h3>{_e(target)}</h3>")
        parts.append(table([r for r in metrics if r["target"] == target],
                           ["label", "precision", "recall", "f1", "support", "accuracy"]))
    o = s.get("open_set") or {}
    parts.append("<h2>Unseen artists and verification</h2>")
    parts.append(table([o], ["auroc", "threshold", "unseen_rejection_rate", "known_rejection_rate", "n_known", "n_unseen"]))
    parts.append(table(verification, ["subset", "score", "auc", "n_pairs", "n_positive"]))
    parts.append("<h2>Epochs</h2>")
    parts.append(table(epochs, ["epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"]))
    parts.append("<h2>Plots</h2>" + "".join(_img(rel, alt) for rel, alt in plots))
    parts.append("<h2>Mosaics</h2><p>Green border: correct; red: wrong (with the other artist named).</p>")
    for artist, (real, predicted) in mosaics:
        parts.append(f"<h3>{_e(artist)}</h3><div class='mosaics'>{_img(real, f'Real paintings by {artist}')}"
                     f"{_img(predicted, f'Predicted as {artist}')}</div>")
    parts.append("<h2>Config</h2><pre>" + _e(json.dumps(cfg, indent=2, sort_keys=True)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
