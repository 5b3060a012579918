"""What the CLI and the demo print: evaluation summaries, per-artist tables and query rows
(aligned text via tabulate, JSON or CSV). One module so both edges format alike."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def format_summary(s: dict[str, Any]) -> str:
    """Evaluation figures in a few lines."""
    lines = [f"run {s['run_id']}: artist test accuracy {s['test_accuracy']:.3f} (chance {s['chance']:.3f}), "
             f"top-3 {s['top3_accuracy']:.3f}, macro-F1 {s['macro_f1']:.3f} on {s['n_test']} paintings"]
    if s.get("gone"):
        lines.append(f"  {gone_line(s['gone'])}")
    for t, m in s.get("targets", {}).items():
        if t != "artist":
            lines.append(f"  {t}: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f} ({m['n']} labelled)")
    o = s.get("open_set") or {}
    if o.get("auroc") is not None:
        lines.append(f"  unseen artists: open-set AUROC {o['auroc']:.3f}; at threshold {o['threshold']:.3f} "
                     f"{o['unseen_rejection_rate']:.0%} of {o['n_unseen']} unseen rejected, "
                     f"{o['known_rejection_rate']:.0%} of known")
    for subset, by_score in (s.get("verification") or {}).items():
        auc = by_score.get("prob_product", {}).get("auc")
        cos = by_score.get("embedding_cosine", {}).get("auc")
        if auc is not None or cos is not None:
            lines.append(f"  verification ({subset} artists): pair AUC {_figure(auc)} (probabilities), "
                         f"{_figure(cos)} (embeddings)")
    return "\n".join(lines)


def gone_line(gone: dict[str, int]) -> str:
    """What left the run's dataset version since it was made, e.g. ``2 test, 1 train paintings
    left the folder since the dataset version was made; evaluated on the rest``."""
    counts = ", ".join(f"{n} {split}" for split, n in gone.items())
    return f"{counts} painting(s) left the folder since the dataset version was made; evaluated on the rest"


def _figure(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _jsonable(v: Any) -> Any:
    import datetime
    import decimal

    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    return v


def print_rows(columns: list[str], rows: Sequence[Sequence[Any]], fmt: str) -> None:
    """Rows as an aligned text table, JSON (a list of objects) or CSV."""
    if fmt == "json":
        print(json.dumps([{c: _jsonable(v) for c, v in zip(columns, r, strict=True)} for r in rows]))
        return
    if fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows([["" if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else v) for v in r]
                     for r in rows])
        return
    cells = [[("" if v is None else json.dumps(v) if isinstance(v, (dict, list)) else _jsonable(v)) for v in r]
             for r in rows]
    print(table(columns, cells))
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def table(columns: list[str], rows: Sequence[Sequence[Any]], floatfmt: str = "g") -> str:
    """The one text-table formatter of the CLI and the demo (tabulate, plain style)."""
    from tabulate import tabulate

    # Query output is shown as the database returned it (no number re-parsing of text cells).
    return tabulate(rows, headers=columns, tablefmt="simple", floatfmt=floatfmt, disable_numparse=floatfmt == "g")


def format_artist_table(rows: list[dict[str, Any]]) -> str:
    """Per-artist test metrics, three decimals."""
    columns = ["artist", "precision", "recall", "f1", "support", "accuracy"]
    return table(columns, [[r[c] for c in columns] for r in rows], floatfmt=".3f")


class Stopped(Exception):  # noqa: N818 (a state, not a bug)
    """A run or train command ended by a stop signal: one line and the shell's status 128 + n."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
