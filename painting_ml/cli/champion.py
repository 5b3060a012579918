"""``painting-ml`` commands that put the champion to work: ``export`` (the serving SavedModel),
``attribute`` (score the catalog now, as the painting_attribute DAG does after a promotion),
``similar IMG`` (nearest catalog paintings) and ``attributions`` (each painting's top artists, or
``--misattributed``: the labelled paintings worth a second look). Cheap to import: the heavy
modules load inside the commands."""

from __future__ import annotations

import argparse
import json

from painting_ml.cli.console import print_rows
from painting_ml.cli.flags import RUN_ID, int_in, probability, require_run


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
    from painting_ml.results.attribution import similar_to_image

    out = similar_to_image(args.image, k=args.k)
    if args.json:
        print(json.dumps(out))
        return
    print(f"champion run {out['run_id']}: the {len(out['neighbours'])} catalog paintings closest to {args.image}")
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add the champion commands to ``painting-ml``'s subcommands."""
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
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_similar)

    p = sub.add_parser("attributions", help="the champion's top artists per painting; --misattributed: labelled "
                                            "paintings whose label it doubts")
    p.add_argument("--misattributed", action="store_true",
                   help="only paintings whose catalog artist gets < p while another artist gets > q")
    p.add_argument("-p", type=probability, default=0.2, help="most probability the catalog artist may get (--misattributed)")
    p.add_argument("-q", type=probability, default=0.6, help="least probability the rival artist must get (--misattributed)")
    p.add_argument("--artist", help="only paintings by or attributed to this artist")
    p.add_argument("--run-id", type=RUN_ID, help="this run's scores instead of the champion's")
    p.add_argument("--limit", type=int_in(1, 1_000_000, "a limit"), default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_attributions)
