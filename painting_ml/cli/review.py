"""``painting-ml review``: the curators' review loop from the command line, as on the review page.

``review list`` shows the flagged paintings awaiting a verdict; ``review keep FILE``, ``review
relabel FILE ARTIST`` and ``review unsure FILE`` record a verdict (a relabel is a label override the
next retrain applies); ``review history FILE`` lists a painting's verdicts; ``review --undo ID``
takes one back. The reviewer is ``--reviewer`` or your login name; the data folder is
``--data-dir`` or the configured default. A painting that already has a verdict is refused with
that verdict unless ``--replace ID`` names it (so a verdict is never overwritten unseen).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from painting_ml.cli.console import print_rows
from painting_ml.cli.flags import int_in
from painting_ml.core.errors import PaintingMLError

REVIEW_ID = int_in(1, 2**31 - 1, "a review id")


def _reviewer(args: argparse.Namespace) -> str:
    if args.reviewer:
        return str(args.reviewer)
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment nor in the password database
        raise PaintingMLError("cannot tell who you are (no login name here); pass --reviewer NAME") from None


def _root(args: argparse.Namespace) -> str:
    from painting_ml.core.settings import get_settings
    from painting_ml.data.ingest import resolve_root

    return resolve_root(args.data_dir or get_settings().default_data_dir)


def _print_review(args: argparse.Namespace, row: dict[str, Any]) -> None:
    from painting_ml.results.reviews import describe

    if args.json:
        print(json.dumps(row, default=str))
    else:
        print(f"{row['filename']}: recorded {describe(row)} (undo with `painting-ml review --undo {row['id']}`)")
        if row.get("conflicting_copies"):
            copies = ", ".join(f"{c['filename']} ({c['artist']!r})" for c in row["conflicting_copies"])
            print(f"{row['filename']}: its copies {copies} carry another artist, so training leaves the group out "
                  "until they agree; give them the same verdict")


def _print_undone(args: argparse.Namespace, row: dict[str, Any]) -> None:
    from painting_ml.results.reviews import describe, standing_review

    if args.json:
        print(json.dumps(row, default=str))
        return
    standing = standing_review(row["data_root"], row["filename"])
    now = f"standing now: {describe(standing)}" if standing else "no verdict stands now"
    print(f"{row['filename']}: undid {describe(row)}; {now}")


def _cmd_review(args: argparse.Namespace) -> None:
    from painting_ml.results import reviews

    if args.undo is not None:
        if args.action is not None:
            raise PaintingMLError(f"--undo goes alone, not with `review {args.action}`")
        _print_undone(args, reviews.undo(args.undo, _reviewer(args)))
        return
    if args.action is None:
        raise PaintingMLError("name an action: list, keep FILE, relabel FILE ARTIST, unsure FILE, history FILE "
                              "(or --undo ID)")
    if args.action == "list":
        rows = reviews.queue(args.limit, _root(args) if args.data_dir else None)
        columns = ["rank", "filename", "catalog_artist", "suggested_artist", "quality", "orphaned", "last_decision",
                   "review_id", "audit_id", "data_root"]
        print_rows(columns, [tuple(r[c] for c in columns) for r in rows], "json" if args.json else "table")
        if not rows and not args.json:
            print("nothing awaits a verdict: no ranked audit flagged a painting"
                  f"{f' of {_root(args)}' if args.data_dir else ''} that is still unsettled "
                  "(`painting-ml audit --list` shows the audits; `painting-ml audit` runs one)", file=sys.stderr)
        return
    filename = Path(args.file).name
    if args.action == "history":
        rows = reviews.history(_root(args), filename)
        columns = ["id", "decision", "catalog_artist", "new_artist", "reviewer", "reviewed_at", "note", "undone_at",
                   "undone_by", "audit_id"]
        print_rows(columns, [tuple(r[c] for c in columns) for r in rows], "json" if args.json else "table")
        return
    try:
        row = reviews.review(_root(args), filename, args.action, _reviewer(args),
                             new_artist=getattr(args, "artist", None), note=args.note, seen_review_id=args.replace)
    except reviews.ReviewConflict as exc:
        hint = f"; pass --replace {exc.standing['id']} to replace it" if exc.standing else ""
        raise PaintingMLError(f"{exc}{hint}") from None
    _print_review(args, row)


def _common(p: argparse.ArgumentParser, suppress: bool) -> None:
    """Flags accepted before and after the action (``review --reviewer X keep F`` or ``review keep F
    --reviewer X``); the action's copies default to SUPPRESS so they do not reset the outer ones."""
    default: Any = argparse.SUPPRESS if suppress else None
    p.add_argument("--reviewer", metavar="NAME", default=default, help="who decides (default: your login name)")
    p.add_argument("--data-dir", metavar="DIR", default=default,
                   help="the data folder of the painting (default: the configured PAINTING_DATA_DIR)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                   help="print JSON")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``review`` to ``painting-ml``'s subcommands."""
    p = sub.add_parser("review", help="the label-review queue and the curators' verdicts: list, keep, relabel, "
                                      "unsure, history, --undo ID")
    _common(p, suppress=False)
    p.add_argument("--undo", type=REVIEW_ID, metavar="ID", help="take back verdict ID (its row is kept, marked undone)")
    p.set_defaults(func=_cmd_review)
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    a = actions.add_parser("list", help="the flagged paintings awaiting a verdict, by rank")
    a.add_argument("--limit", type=int_in(1, 100_000, "a limit"), default=50)
    _common(a, suppress=True)
    for name, text in (("keep", "the catalog artist is right: the painting leaves the queue until its file changes"),
                       ("relabel", "the painting is by ARTIST (a catalog artist): a label override the next "
                                   "retrain applies"),
                       ("unsure", "no verdict yet: the painting stays in the queue")):
        a = actions.add_parser(name, help=text)
        a.add_argument("file", metavar="FILE", help="the painting's file name (as in the catalog)")
        if name == "relabel":
            a.add_argument("artist", metavar="ARTIST", help="the artist the painting is by")
        a.add_argument("--note", help="why (kept with the verdict)")
        a.add_argument("--replace", type=REVIEW_ID, metavar="ID",
                       help="the painting's standing verdict you mean to replace (a verdict is never replaced unseen)")
        _common(a, suppress=True)
    a = actions.add_parser("history", help="every verdict on one painting, undone ones included")
    a.add_argument("file", metavar="FILE")
    _common(a, suppress=True)
