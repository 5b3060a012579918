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


CONFIG_FLAGS = ("n_artists", "epochs", "image_size", "batch_size", "optimizer", "learning_rate", "seed",
                "strategy", "artists", "cap", "augment", "resize_mode", "cache", "backbone", "weights",
                "targets", "fine_tune", "fine_tune_stages", "gradient_accumulation_steps", "label_smoothing")


def parse_set(pairs: list[str]) -> dict:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, booleans, lists,
    objects) and as text otherwise."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PaintingMLError(f"--set {pair!r}: write key=value, e.g. --set label_smoothing=0.1")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _config_from_args(args: argparse.Namespace):
    """The run config from ``--config FILE.json``, then the explicit flags, then ``--set k=v``."""
    from painting_ml.config import RunConfig

    params: dict = {}
    if getattr(args, "config", None):
        try:
            params.update(json.loads(Path(args.config).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise PaintingMLError(f"--config {args.config}: cannot read a JSON object ({exc})") from exc
    if args.data_dir:
        params["data_dir"] = args.data_dir
    for key in CONFIG_FLAGS:
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    if args.no_wandb:
        params["wandb"] = False
    if args.no_online_augment:
        params["online_augment"] = False
    params.update(parse_set(args.set or []))
    return RunConfig.from_params(params)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="Kaggle-layout folder (all_data_info.csv / train_info.csv + images)")
    p.add_argument("--config", help="JSON file of config keys (flags and --set override it)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any config key, e.g. --set label_smoothing=0.1 --set 'loss_weights={\"style\": 0.5}'")
    p.add_argument("--n-artists", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", help="adam, adamw, rmsprop or sgd")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--strategy", choices=["top", "balanced", "capped", "list"])
    p.add_argument("--artists", help="comma-separated artist names (implies --strategy list)")
    p.add_argument("--cap", type=int, help="per-artist maximum for --strategy capped")
    p.add_argument("--augment", help="offline transforms, comma-separated (hflip,vflip,hvflip,rot90,rot45,...)")
    p.add_argument("--resize-mode", choices=["crop", "pad"])
    p.add_argument("--cache", choices=["memory", "disk", "none"])
    p.add_argument("--backbone", help="resnet50, resnet101 or resnet18")
    p.add_argument("--weights", help="none, imagenet, or a local backbone weights file (include_top=False)")
    p.add_argument("--targets", help="artist, or artist plus style and/or genre, comma-separated")
    p.add_argument("--fine-tune", help="all, frozen, last_k or two_phase")
    p.add_argument("--fine-tune-stages", type=int, help="stages trained by last_k / two_phase (1-5)")
    p.add_argument("--gradient-accumulation-steps", type=int)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--no-online-augment", action="store_true", help="no random affine augmentation in training")
    p.add_argument("--no-wandb", action="store_true", help="do not log to wandb")
    p.add_argument("--json", action="store_true", help="print JSON")


def _cmd_run(args: argparse.Namespace) -> None:
    from painting_ml.evaluation import artist_table
    from painting_ml.pipeline import run_all

    summary = run_all(_config_from_args(args), run_key=args.run_key)
    if args.json:
        print(json.dumps(summary))
        return
    print(format_artist_table(artist_table(summary["run_id"])))
    print(format_summary(summary))
    print(f"mosaics in {summary['mosaics']}")


def _cmd_train(args: argparse.Namespace) -> None:
    from painting_ml.pipeline import prepare_and_train

    cfg = _config_from_args(args)
    out = prepare_and_train(cfg, run_key=args.run_key)
    _emit(args, out, f"run {out['run_id']} trained on dataset version {out['dataset_version_id']}: "
                     f"model {out['model_path']}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from painting_ml.evaluation import evaluate

    summary = evaluate(args.run_id)
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_summary(summary))


def _cmd_promote(args: argparse.Namespace) -> None:
    from painting_ml.promotion import promote

    d = promote(args.run_id, args.max_recall_drop).to_dict()
    verdict = "promoted to champion" if d["promoted"] else "not promoted"
    _emit(args, d, f"run {d['run_id']}: {verdict} — " + "; ".join(d["reasons"]))


def _cmd_report(args: argparse.Namespace) -> None:
    from painting_ml.mosaics import render_run_mosaics
    from painting_ml.report import render_report

    render_run_mosaics(args.run_id)
    path = render_report(args.run_id)
    _emit(args, {"run_id": args.run_id, "report": str(path)}, str(path))


def _cmd_predict(args: argparse.Namespace) -> None:
    from painting_ml.inference import predict

    out = predict(args.images, run_id=args.run_id, k=args.top_k)
    if args.json:
        print(json.dumps(out))
        return
    print(f"run {out['run_id']}")
    for entry in out["predictions"]:
        ranked = ", ".join(f"{a['artist']} {a['probability']:.3f}" for a in entry["artists"])
        extra = "".join(f"; {t}: {entry[t]['label']} {entry[t]['probability']:.3f}" for t in ("style", "genre") if t in entry)
        print(f"{entry['image']}: {ranked}{extra}")


def _cmd_verify(args: argparse.Namespace) -> None:
    from painting_ml.inference import verify

    out = verify(args.image_a, args.image_b, run_id=args.run_id)
    _emit(args, out, f"P(same artist) = {out['same_artist_probability']:.3f} (embedding cosine "
                     f"{out['embedding_cosine']:.3f}; A looks like {out['top_artist_a'][0]}, "
                     f"B like {out['top_artist_b'][0]}; run {out['run_id']})")


def format_summary(s: dict) -> str:
    """Evaluation figures in a few lines."""
    lines = [f"run {s['run_id']}: artist test accuracy {s['test_accuracy']:.3f} (chance {s['chance']:.3f}), "
             f"top-3 {s['top3_accuracy']:.3f}, macro-F1 {s['macro_f1']:.3f} on {s['n_test']} paintings"]
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
            f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
            lines.append(f"  verification ({subset} artists): pair AUC {f(auc)} (probabilities), {f(cos)} (embeddings)")
    return "\n".join(lines)


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


def _cmd_sql(args: argparse.Namespace) -> None:
    from painting_ml.queries import list_queries, run_query

    if args.list or not args.name:
        for q in list_queries():
            params = " ".join(f"[{p.name}={p.default}]" if p.default else f"{p.name}=..." for p in q.params)
            print(f"{q.name:<22} {q.description}" + (f"\n{'':<22} params: {params}" if params else ""))
        return
    params = {}
    for pair in args.param or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise PaintingMLError(f"--param {pair!r}: write name=value")
        params[key.strip()] = value
    columns, rows = run_query(args.name, params)
    _print_rows(columns, rows, "json" if args.json else "csv" if args.csv else "table")


def _cmd_runs(args: argparse.Namespace) -> None:
    from painting_ml.queries import run_query

    columns, rows = run_query("compare_runs", {"limit": str(args.limit)})
    _print_rows(columns, rows, "json" if args.json else "table")


def _jsonable(v):
    import datetime
    import decimal

    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    return v


def _print_rows(columns: list[str], rows: list[tuple], fmt: str) -> None:
    """Rows as an aligned text table, JSON (a list of objects) or CSV."""
    if fmt == "json":
        print(json.dumps([{c: _jsonable(v) for c, v in zip(columns, r)} for r in rows]))
        return
    if fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows([["" if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else v) for v in r]
                     for r in rows])
        return
    cells = [[("" if v is None else json.dumps(v) if isinstance(v, (dict, list)) else str(_jsonable(v))) for v in r]
             for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


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
    _add_config_flags(p)
    p.add_argument("--run-key", help="stable key: the same key resumes that run instead of starting over")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("train", help="ingest, select, split, augment and train one run (resumable by --run-key)")
    _add_config_flags(p)
    p.add_argument("--run-key", help="stable key: the same key resumes that run instead of starting over")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained run: metrics, confusion, open-set, verification")
    p.add_argument("--run-id", type=int, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("promote", help="run the promotion gate on an evaluated run (champion if it passes)")
    p.add_argument("--run-id", type=int, required=True)
    p.add_argument("--max-recall-drop", type=float, default=5.0, help="points any artist's recall may fall")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_promote)

    p = sub.add_parser("report", help="render a run's mosaics, plots and report.html; print its path")
    p.add_argument("--run-id", type=int, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("predict", help="top-k artists for images, from the champion model")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--run-id", type=int, help="use this run's model instead of the champion")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("verify", help="probability that two paintings share a painter")
    p.add_argument("image_a", metavar="A")
    p.add_argument("image_b", metavar="B")
    p.add_argument("--run-id", type=int, help="use this run's model instead of the champion")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("metrics", help="print a run's per-artist metrics (latest run by default)")
    p.add_argument("--run-id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_metrics)

    p = sub.add_parser("sql", help="run a named query from sql/queries (list them with --list)")
    p.add_argument("name", nargs="?", help="query name, e.g. latest_metrics, compare_runs, confused_pairs")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="query parameter (repeatable)")
    p.add_argument("--list", action="store_true", help="list the named queries and their parameters")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    p.set_defaults(func=_cmd_sql)

    p = sub.add_parser("runs", help="list recent runs with their key metrics")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_runs)

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
