"""``painting-ml`` commands about the champion: ``champion`` (who it is and how it got there;
``--set RUN_ID`` names one by hand) and ``rollback`` (back to the previous one), both recorded with
who and why; and the commands that put it to work: ``export`` (the serving SavedModel),
``attribute`` (score the catalog now, as the painting_attribute DAG does after a promotion),
``similar IMG`` (nearest catalog paintings) and ``attributions`` (each painting's top artists, or
``--misattributed``: the labelled paintings worth a second look). Cheap to import: the heavy
modules load inside the commands."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from painting_ml.cli.console import print_rows
from painting_ml.cli.flags import RUN_ID, int_in, probability, require_run
from painting_ml.core.errors import PaintingMLError

if TYPE_CHECKING:
    from painting_ml.results.registry import ChampionChange


def _who(args: argparse.Namespace) -> str:
    """``--who``, else the login name of whoever runs the command."""
    if args.who is not None:
        return args.who
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment nor in the password database
        raise PaintingMLError("cannot tell who you are (no login name here); pass --who NAME") from None


def model_run(run_id: int | None, use: str) -> int:
    """The run whose model a command uses: ``--run-id`` when given (it must exist), else the
    champion; with neither, one line saying how to get one. Never a silent fall-back to another run.

    Args:
        run_id: the command's ``--run-id`` (None: the champion).
        use: what the model is for, in the message ("predict", "verify", "search").
    """
    if run_id is not None:
        require_run(run_id)
        return run_id
    from painting_ml.results.attribution import current_champion

    champion = current_champion()
    if champion is None:
        raise PaintingMLError(f"no champion yet, so no model to {use} with: promote an evaluated run "
                              "(`painting-ml promote --run-id N`, or `painting-ml champion --set N --why TEXT`), or "
                              "pass --run-id N to use that run's model")
    return champion


def _print_change(args: argparse.Namespace, change: ChampionChange) -> None:
    was = f"run {change.previous_run_id}" if change.previous_run_id is not None else "none"
    print(json.dumps(change.to_dict()) if args.json else
          f"run {change.run_id} is the champion now (was {was}); recorded as {change.action} by "
          f"{change.who}: {change.why}")


def _cmd_champion(args: argparse.Namespace) -> None:
    from painting_ml.results.registry import champion_history, champion_info, set_champion

    if args.set is not None:
        if args.why is None:
            raise PaintingMLError("--set needs --why TEXT: the reason is kept in the champion history")
        require_run(args.set)
        _print_change(args, set_champion(args.set, _who(args), args.why))
        return
    if args.why is not None or args.who is not None:
        raise PaintingMLError("--why and --who go with --set RUN_ID (or with `painting-ml rollback`)")
    info, history = champion_info(), champion_history(limit=args.limit)
    if args.json:
        print(json.dumps({"champion": info, "history": [c.to_dict() for c in history]}))
        return
    if info is None:
        print("no champion yet")
    else:
        f1 = "n/a" if info["macro_f1"] is None else f"{info['macro_f1']:.3f}"
        print(f"champion: run {info['run_id']} (macro-F1 {f1}, dataset version {info['dataset_version_id']}) "
              f"since {info['since']}" + (f" by {info['how']}" if info["how"] else ""))
    print_rows(["id", "changed_at", "action", "run_id", "previous_run_id", "who", "why"],
               [(c.id, c.changed_at, c.action, c.run_id, c.previous_run_id, c.who, c.why) for c in history], "table")


def _cmd_rollback(args: argparse.Namespace) -> None:
    from painting_ml.results.registry import rollback_champion

    _print_change(args, rollback_champion(_who(args), args.why))


def _cmd_export(args: argparse.Namespace) -> None:
    from painting_ml.learn.export import export_serving_model
    from painting_ml.results.attribution import require_champion

    require_run(args.run_id)
    out = export_serving_model(args.run_id or require_champion(), force=args.force)
    print(json.dumps(out) if args.json else f"run {out['run_id']}: serving SavedModel in {out['path']} "
          f"({out['files']} files recorded{'' if out['written'] else '; already there'})")


def _cmd_attribute(args: argparse.Namespace) -> None:
    from painting_ml.results.attribution import attribute_catalog

    require_run(args.run_id)
    out = attribute_catalog(args.run_id, k=args.top_k)
    print(json.dumps(out) if args.json else
          f"run {out['run_id']}: scored {out['newly_scored']} new painting(s); {out['scored']} scored in all, "
          f"{out['artists']} artist centroids, nearest-neighbour index: "
          f"{'pgvector' if out['vector_index'] else 'none (arrays)'}")


def _cmd_similar(args: argparse.Namespace) -> None:
    from painting_ml.learn.inference import checked_image_paths
    from painting_ml.results.attribution import similar_to_image

    checked_image_paths([args.image])  # a missing or unusable image is refused before the model loads
    run_id = model_run(args.run_id, "search")
    out = similar_to_image(args.image, k=args.k, run_id=run_id)
    if args.json:
        print(json.dumps(out))
        return
    who = "run" if args.run_id is not None else "champion run"
    print(f"{who} {out['run_id']}: the {len(out['neighbours'])} catalog paintings closest to {args.image}")
    print_rows(["filename", "artist", "distance", "path"],
               [(n["filename"], n["artist"], round(n["distance"], 4), n["path"]) for n in out["neighbours"]], "table")


def _cmd_attributions(args: argparse.Namespace) -> None:
    from painting_ml.results.queries import run_query

    if args.misattributed:
        params = {"p": str(args.p), "q": str(args.q), "limit": str(args.limit)}
        name = "possible_misattributions"
    else:
        params = {"limit": str(args.limit), **({"artist": args.artist} if args.artist else {})}
        name = "attributions"
    if args.run_id is not None:
        require_run(args.run_id)
        params["run_id"] = str(args.run_id)
    columns, rows = run_query(name, params)
    print_rows(columns, rows, "json" if args.json else "table")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the champion commands to ``painting-ml``'s subcommands."""
    p = sub.add_parser("champion", help="show the champion and how it got there; --set RUN_ID --why TEXT makes "
                                        "a run champion by hand (recorded with who and why)")
    p.add_argument("--set", type=RUN_ID, metavar="RUN_ID", help="make this evaluated run the champion, "
                                                                "bypassing the gate (needs --why)")
    p.add_argument("--why", metavar="TEXT", help="the reason, kept in the champion history (required with --set)")
    p.add_argument("--who", metavar="NAME", help="who makes the change (default: your login name)")
    p.add_argument("--limit", type=int_in(1, 10_000, "a limit"), default=20, help="history rows shown")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_champion)

    p = sub.add_parser("rollback", help="make the previous champion the champion again (recorded with who "
                                        "and why)")
    p.add_argument("--why", metavar="TEXT", required=True, help="the reason, kept in the champion history")
    p.add_argument("--who", metavar="NAME", help="who makes the change (default: your login name)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_rollback)

    p = sub.add_parser("export", help="write the champion's serving SavedModel (image bytes in, probabilities "
                                      "and embedding out) and record its files")
    p.add_argument("--run-id", type=RUN_ID, help="export this run instead of the champion")
    p.add_argument("--force", action="store_true", help="rewrite an existing export")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("attribute", help="score the catalog's unscored paintings with the champion now "
                                         "(what the painting_attribute DAG does)")
    p.add_argument("--run-id", type=RUN_ID, help="score with this run instead of the champion")
    p.add_argument("--top-k", type=int_in(1, 100, "a top-k"), default=5, help="artists stored per painting")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_attribute)

    p = sub.add_parser("similar", help="the catalog paintings closest to an image by the champion's embedding")
    p.add_argument("image", metavar="IMG")
    p.add_argument("-k", type=int_in(1, 10_000, "a count"), default=10, help="how many paintings")
    p.add_argument("--run-id", type=RUN_ID, help="use this run's model (and its scores) instead of the champion's")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_similar)

    p = sub.add_parser("attributions", help="the champion's top artists per painting; --misattributed: labelled "
                                            "paintings whose label it doubts")
    p.add_argument("--misattributed", action="store_true",
                   help="only paintings whose catalog artist gets < p while another artist gets > q")
    p.add_argument("-p", type=probability, default=0.2,
                   help="most probability the catalog artist may get (--misattributed)")
    p.add_argument("-q", type=probability, default=0.6,
                   help="least probability the rival artist must get (--misattributed)")
    p.add_argument("--artist", help="only paintings by or attributed to this artist")
    p.add_argument("--run-id", type=RUN_ID, help="this run's scores instead of the champion's")
    p.add_argument("--limit", type=int_in(1, 1_000_000, "a limit"), default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_attributions)
