"""``painting-ml``: the command line.

User errors (:class:`PaintingMLError`) print one line and exit with status 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from painting_ml.exceptions import PaintingMLError


def _cmd_synth(args: argparse.Namespace) -> None:
    from painting_ml.synth import generate

    counts = generate(Path(args.out), artists=args.artists, per_artist=args.per_artist, size=args.size,
                      seed=args.seed, test_only_artists=args.test_only, broken=args.broken)
    _emit(args, counts, f"wrote {counts['images']} images ({counts['broken']} broken on purpose) and "
                        f"{counts['paintings']} CSV rows to {args.out}")


def _cmd_ingest(args: argparse.Namespace) -> None:
    from painting_ml.catalog import ingest

    s = ingest(args.data_dir).to_dict()
    _emit(args, s, f"{s['source_csv']}: {s['rows']} rows, {s['loaded']} loaded, {s['rejected']} rejected "
                   f"(tables now: {s['paintings_total']} paintings, {s['rejects_total']} rejects)")


def _cmd_migrate(args: argparse.Namespace) -> None:
    from painting_ml import db

    db.migrate()
    _emit(args, {"migrated": True}, "schema is up to date")


def _config_from_args(args: argparse.Namespace):
    from painting_ml.config import RunConfig

    params = {"data_dir": args.data_dir}
    for key in ("n_artists", "epochs", "image_size", "batch_size", "optimizer", "learning_rate", "seed",
                "strategy", "artists", "cap", "augment", "resize_mode", "cache"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    if args.no_wandb:
        params["wandb"] = False
    if args.no_online_augment:
        params["online_augment"] = False
    return RunConfig.from_params(params)


def _cmd_run(args: argparse.Namespace) -> None:
    from painting_ml.evaluation import artist_table
    from painting_ml.pipeline import run_all

    summary = run_all(_config_from_args(args))
    if args.json:
        print(json.dumps(summary))
        return
    print(format_artist_table(artist_table(summary["run_id"])))
    print(f"test accuracy {summary['test_accuracy']:.3f} (chance {summary['chance']:.3f}); mosaics in {summary['mosaics']}")


def _cmd_metrics(args: argparse.Namespace) -> None:
    from painting_ml import db
    from painting_ml.evaluation import artist_table

    run_id = args.run_id
    if run_id is None:
        with db.connect() as conn:
            row = conn.execute(db.sql("runs", "latest_run")).fetchone()
        if row is None:
            raise PaintingMLError("no evaluated run yet; run `make demo` or `painting-ml run` first")
        run_id = row[0]
    rows = artist_table(run_id)
    if args.json:
        print(json.dumps({"run_id": run_id, "artists": rows}))
    else:
        print(f"run {run_id}")
        print(format_artist_table(rows))


def _cmd_demo(args: argparse.Namespace) -> None:
    from painting_ml.demo import run_demo

    run_demo(artists=args.artists, per_artist=args.per_artist, epochs=args.epochs, image_size=args.image_size)


def format_artist_table(rows: list[dict]) -> str:
    """A fixed-width table of per-artist metrics."""
    width = max([len("artist")] + [len(r["artist"]) for r in rows])
    lines = [f"{'artist':<{width}}  precision  recall     f1  support  accuracy"]
    for r in rows:
        lines.append(f"{r['artist']:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  "
                     f"{r['support']:7d}  {r['accuracy']:8.3f}")
    return "\n".join(lines)


def _emit(args: argparse.Namespace, payload: dict, text: str) -> None:
    print(json.dumps(payload) if getattr(args, "json", False) else text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="painting-ml", description="Painter-attribution retraining system.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate a painting set in the Kaggle layout")
    p.add_argument("--out", required=True, help="destination folder")
    p.add_argument("--artists", type=int, default=10)
    p.add_argument("--per-artist", type=int, default=40)
    p.add_argument("--size", type=int, default=96, help="long side of the images in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-only", type=int, default=2, help="extra artists that appear only in test/")
    p.add_argument("--broken", type=int, default=3, help="files made unreadable on purpose")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("ingest", help="load a Kaggle-layout folder into Postgres (rejects recorded)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("migrate", help="create or update the painting database schema")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("run", help="run every retraining step in this process (no Airflow)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--n-artists", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--strategy", choices=["top", "balanced", "capped", "list"])
    p.add_argument("--artists", help="comma-separated artist names (implies --strategy list)")
    p.add_argument("--cap", type=int, help="per-artist maximum for --strategy capped")
    p.add_argument("--augment", help="offline transforms, comma-separated (hflip,vflip,hvflip,rot90,rot45,...)")
    p.add_argument("--resize-mode", choices=["crop", "pad"])
    p.add_argument("--cache", choices=["memory", "disk", "none"])
    p.add_argument("--no-online-augment", action="store_true", help="no random affine augmentation in training")
    p.add_argument("--no-wandb", action="store_true", help="do not log to wandb")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("metrics", help="print a run's per-artist metrics (latest run by default)")
    p.add_argument("--run-id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_metrics)

    p = sub.add_parser("demo", help="generate a set and run the painting_retrain DAG with real Airflow")
    p.add_argument("--artists", type=int, default=10)
    p.add_argument("--per-artist", type=int, default=40)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--image-size", type=int, default=64)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except PaintingMLError as exc:
        print(f"painting-ml {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
