"""``painting-ml audit``: find the catalog's mislabelled paintings without Airflow (k fold
trainings, out-of-fold probabilities, cleanlab's ranking), printing the top issues; ``--list``
shows the latest audits. Cheap to import: the heavy modules load inside the command."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from painting_ml.cli.console import print_rows, table
from painting_ml.cli.flags import add_config_flags, config_from_args, int_in


def _cmd_audit(args: argparse.Namespace) -> None:
    if args.list:
        from painting_ml.results.label_issues import recent_audits

        rows = recent_audits(args.top)
        columns = ["id", "audit_key", "status", "data_root", "folds", "recipe", "audited", "flagged", "started_at",
                   "finished_at"]
        print_rows(columns, [[r[c] for c in columns] for r in rows], "json" if args.json else "table")
        return
    import shlex
    import uuid

    from painting_ml.cli.console import Stopped
    from painting_ml.core.interrupts import Interrupted, interruptible
    from painting_ml.pipeline import audit_all

    cfg = config_from_args(args)
    key = args.audit_key or f"cli:{uuid.uuid4().hex}"
    try:
        with interruptible():
            out = audit_all(cfg, folds=args.folds, recipe=args.recipe, audit_key=key, top=args.top)
    except Interrupted as exc:
        resume = shlex.join(["painting-ml", *args.argv, *(() if args.audit_key else ("--audit-key", key))])
        raise Stopped(f"{exc}; audit {key} stopped, finished folds kept — resume with: {resume}",
                      exc.exit_code) from None
    # A resumed key keeps the folds and recipe it began with, whatever the flags say now.
    from painting_ml.learn.audit import audit_info

    info = audit_info(int(out["audit_id"]))
    folds, recipe = int(info["folds"]), str(info["recipe"])
    if (folds, recipe) != (args.folds, args.recipe):
        print(f"painting-ml audit: audit {key} began with --folds {folds} --recipe {recipe} and kept them "
              f"(not --folds {args.folds} --recipe {args.recipe}); a new --audit-key starts an audit with new ones",
              file=sys.stderr)
    if recipe == "head" and info["config"].get("weights") is None:
        print("painting-ml audit: recipe head froze a backbone without weights (random features), so its flags "
              "say little; audit with --recipe full, or give the backbone --weights", file=sys.stderr)
    if args.json:
        print(json.dumps({**out, "folds": folds, "recipe": recipe}, default=str))
        return
    print(format_issues(out["top_issues"]))
    seconds = out["seconds_per_fold"]
    print(f"audit {out['audit_id']} ({out['audit_key']}): {out['flagged']} of {out['audited']} paintings flagged "
          f"by {folds} out-of-fold models (recipe {recipe}"
          f"{'' if seconds is None else f', {seconds:.1f} s of training per fold'}); report {out['report']}")
    print("all of them: painting-ml sql possible_misattributions; judge them with `painting-ml review list` "
          "or on the Airflow UI's review page")


def _audit_key(text: str) -> str:
    """An argparse ``type``: a non-blank audit key, trimmed (it names the fold runs ``audit:<key>:fold<i>``)."""
    key = text.strip()
    if not key:
        raise argparse.ArgumentTypeError(f"{text!r} is blank; an audit key is some text, e.g. --audit-key nightly-1")
    return key


def format_issues(rows: list[dict[str, Any]]) -> str:
    """The top issues as a text table: rank, painting, both artists with their probabilities and
    their shares of the neighbour votes (blank for an audit from before the votes), quality."""
    if not rows:
        return "no label issues found"
    columns = ["rank", "filename", "catalog_artist", "p_catalog", "votes_catalog", "suggested_artist", "p_suggested",
               "votes_suggested", "quality"]
    cells = [[r["rank"], r["filename"], r["catalog_artist"], r["catalog_probability"], r.get("catalog_votes"),
              r["suggested_artist"], r["suggested_probability"], r.get("suggested_votes"), r["quality"]] for r in rows]
    return table(columns, cells, floatfmt=".3f")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``painting-ml audit`` to the subcommands."""
    p = sub.add_parser("audit", help="find mislabelled paintings: k out-of-fold trainings ranked by cleanlab "
                                     "(what the painting_audit DAG does); prints the top issues")
    p.add_argument("--folds", type=int_in(2, 10, "a fold count"), default=5,
                   help="k: each painting is judged by the one of k models that did not train on it")
    p.add_argument("--recipe", choices=["head", "full"], default="head",
                   help="head: backbone frozen (the config's weights), head trained — cheap; full: the training "
                        "recipe in force (use it when training from scratch, e.g. --preset cpu)")
    p.add_argument("--audit-key", type=_audit_key,
                   help="stable key: the same key resumes that audit (its folds, recipe and finished folds are kept)")
    p.add_argument("--top", type=int_in(1, 10_000, "a row count"), default=10, help="issues (or audits) shown")
    p.add_argument("--list", action="store_true", help="list the latest audits instead of running one")
    add_config_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_audit)
