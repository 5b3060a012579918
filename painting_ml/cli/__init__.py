"""``painting-ml``: the command line.

The error contract: every user error — a bad flag or value (argparse's own errors included), a
number out of range, a run id that does not exist, any :class:`PaintingMLError` — prints exactly
one line, ``painting-ml <command>: error: <what> …``, on stderr and exits with status 2. Numbers
are range-checked where they are parsed (limits and top-k at least 1, run ids positive and
existing). Anything else is a bug and keeps its traceback.

A stop signal (SIGTERM, SIGINT, SIGHUP) during ``run`` or ``train`` prints one line — the run's
state and the command that resumes it — and exits with 128 + the signal's number.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from painting_ml.cli.console import Stopped, format_artist_table, format_summary, print_rows
from painting_ml.cli.flags import RUN_ID, add_config_flags, config_from_args, int_in, positive_float, require_run
from painting_ml.core.errors import PaintingMLError


class UsageError(PaintingMLError):
    """A command line argparse refused; ``prog`` is the (sub)command it belongs to."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (no usage block) via :class:`UsageError`."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, f"{message} (see `{self.prog} --help`)")


def _cmd_synth(args: argparse.Namespace) -> None:
    from painting_ml.data.synth import generate

    counts = generate(Path(args.out), artists=args.artists, per_artist=args.per_artist, size=args.size,
                      seed=args.seed, test_only_artists=args.test_only, broken=args.broken,
                      mislabel=args.mislabel, mislabel_kind=args.mislabel_kind)
    wrong = (f"; {counts['mislabelled']} labels wrong on purpose ({args.mislabel_kind}), the truth in "
             f"{Path(args.out) / 'mislabelled.csv'}" if counts["mislabelled"] else "")
    _emit(args, counts, f"wrote {counts['images']} images ({counts['broken']} broken on purpose) and "
                        f"{counts['paintings']} CSV rows to {args.out}{wrong}")


def _cmd_ingest(args: argparse.Namespace) -> None:
    from painting_ml.core import db
    from painting_ml.data.ingest import ingest_if_changed

    db.migrate()
    s = ingest_if_changed(args.data_dir, full=args.full)  # the DAG's path: skip or decode only what changed
    if s is None:
        _emit(args, {"unchanged": True, "data_dir": args.data_dir},
              f"{args.data_dir}: no file changed since the last ingest; nothing to do (--full re-reads everything)")
        return
    _emit(args, s, f"{s['source_csv']}: {s['rows']} rows, {s['loaded']} loaded, {s['rejected']} rejected"
                   + (f", {s['gone']} gone from the folder" if s.get("gone") else "")
                   + f"; {s['probed']} images decoded, {s['changed_rows']} rows new or changed"
                   + f" (folder now: {s['paintings_total']} paintings, {s['rejects_total']} rejects)")


def _cmd_migrate(args: argparse.Namespace) -> None:
    from painting_ml.core import db

    applied = db.migrate()
    version = db.schema_version()
    _emit(args, {"applied": applied, "version": version},
          f"applied {', '.join(applied)}; schema at version {version}" if applied
          else f"schema is up to date (version {version})")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    add_config_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def _cmd_config(args: argparse.Namespace) -> None:
    from painting_ml.core.config import PRESETS, RunConfig, markdown_table

    if args.presets:
        print(json.dumps(PRESETS, indent=2))
    elif args.markdown:
        print(markdown_table())
    else:
        print(json.dumps(RunConfig.model_json_schema(), indent=2))


def _resumable(args: argparse.Namespace, step: Callable[[str], Any]) -> Any:
    """Run ``step(run_key)`` so that a stop signal or a database outage ends in one line with the
    run's state and the command that resumes it (the same command with the same ``--run-key``)."""
    import shlex
    import uuid

    from painting_ml.core.errors import DatabaseError
    from painting_ml.core.interrupts import Interrupted, interruptible

    key = args.run_key or f"cli:{uuid.uuid4().hex}"
    resume = shlex.join(["painting-ml", *args.argv, *(() if args.run_key else ("--run-key", key))])
    try:
        with interruptible():
            return step(key)
    except Interrupted as exc:
        raise Stopped(f"{exc}; {_run_state_line(key)} — resume with: {resume}", exc.exit_code) from None
    except DatabaseError as exc:
        raise DatabaseError(f"{exc} — resume with: {resume}") from None


def _run_state_line(key: str) -> str:
    import psycopg

    from painting_ml.learn.run_status import run_state

    try:
        row = run_state(key)
    except (PaintingMLError, psycopg.Error):
        return "the run's state could not be read (the database is out of reach)"
    if row is None:
        return "no training had started"
    if row["status"] == "interrupted":
        return f"run {row['id']} marked interrupted, its checkpoints kept"
    return f"run {row['id']} is {row['status']}"


def _cmd_run(args: argparse.Namespace) -> None:
    from painting_ml.learn.evaluation import artist_table
    from painting_ml.pipeline import run_all

    cfg = config_from_args(args)
    summary = _resumable(args, lambda key: run_all(cfg, run_key=key))
    if args.json:
        print(json.dumps(summary))
        return
    print(format_artist_table(artist_table(summary["run_id"])))
    print(format_summary(summary))
    print(f"mosaics in {summary['mosaics']}")


def _cmd_train(args: argparse.Namespace) -> None:
    from painting_ml.pipeline import prepare_and_train

    cfg = config_from_args(args)
    out = _resumable(args, lambda key: prepare_and_train(cfg, run_key=key))
    _emit(args, out, f"run {out['run_id']} trained on dataset version {out['dataset_version_id']}: "
                     f"model {out['model_path']}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from painting_ml.learn.evaluation import evaluate

    require_run(args.run_id)
    summary = evaluate(args.run_id)
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_summary(summary))


def _cmd_promote(args: argparse.Namespace) -> None:
    from painting_ml.results.promotion import promote

    require_run(args.run_id)
    from painting_ml.core import db
    from painting_ml.core.config import RunConfig

    with db.connect() as conn:  # the gate's settings the run was trained with, unless a flag says otherwise
        trained = (db.fetch_one(conn, db.sql("runs", "get_run"), {"id": args.run_id}) or {}).get("config") or {}

    def setting(name: str) -> Any:
        flag = getattr(args, name)
        return flag if flag is not None else trained.get(name, RunConfig.model_fields[name].default)

    d = promote(args.run_id, setting("max_recall_drop"), min_macro_f1=setting("min_macro_f1"),
                allow_artist_set_change=setting("allow_artist_set_change")).to_dict()
    verdict = "promoted to champion" if d["promoted"] else "not promoted"
    _emit(args, d, f"run {d['run_id']}: {verdict} — " + "; ".join(d["reasons"]))


def _cmd_report(args: argparse.Namespace) -> None:
    from painting_ml.results.mosaics import render_run_mosaics
    from painting_ml.results.report import render_report

    require_run(args.run_id)
    render_run_mosaics(args.run_id)
    path = render_report(args.run_id)
    _emit(args, {"run_id": args.run_id, "report": str(path)}, str(path))


def _cmd_predict(args: argparse.Namespace) -> None:
    from painting_ml.cli.champion import model_run
    from painting_ml.learn.inference import checked_image_paths, predict

    checked_image_paths(args.images)  # a missing or unusable image is refused before the model loads
    out = predict(args.images, run_id=model_run(args.run_id, "predict"), k=args.top_k)
    if args.json:
        print(json.dumps(out))
        return
    print(f"run {out['run_id']}")
    for entry in out["predictions"]:
        ranked = ", ".join(f"{a['artist']} {a['probability']:.3f}" for a in entry["artists"])
        extra = "".join(f"; {t}: {entry[t]['label']} {entry[t]['probability']:.3f}"
                        for t in ("style", "genre") if t in entry)
        print(f"{entry['image']}: {ranked}{extra}")


def _cmd_verify(args: argparse.Namespace) -> None:
    from painting_ml.cli.champion import model_run
    from painting_ml.learn.inference import checked_image_paths, verify

    checked_image_paths([args.image_a, args.image_b])
    out = verify(args.image_a, args.image_b, run_id=model_run(args.run_id, "verify"))
    _emit(args, out, f"P(same artist) = {out['same_artist_probability']:.3f} (embedding cosine "
                     f"{out['embedding_cosine']:.3f}; A looks like {out['top_artist_a'][0]}, "
                     f"B like {out['top_artist_b'][0]}; run {out['run_id']})")


def _cmd_metrics(args: argparse.Namespace) -> None:
    from painting_ml.core import db
    from painting_ml.learn.evaluation import artist_table

    run_id = args.run_id
    require_run(run_id)
    if run_id is None:
        with db.connect() as conn:
            row = db.fetch_one(conn, db.sql("runs", "latest_run"))
        if row is None:
            raise PaintingMLError("no evaluated run yet; run `make demo` or `painting-ml run` first")
        run_id = row["run_id"]
    rows = artist_table(run_id)
    if args.json:
        print(json.dumps({"run_id": run_id, "artists": rows}))
    else:
        print(f"run {run_id}")
        print(format_artist_table(rows))


def _cmd_demo(args: argparse.Namespace) -> None:
    from painting_ml.cli.demo import run_demo

    run_demo(artists=args.artists, per_artist=args.per_artist, epochs=args.epochs, image_size=args.image_size)


def _cmd_airflow(args: argparse.Namespace) -> None:
    from painting_ml.core.settings import get_settings
    from painting_ml.orchestration.local_server import cli_environment, default_preset, serve

    preset = default_preset(get_settings()) if args.preset is None else None if args.preset == "none" else args.preset
    if args.print_env:
        print(cli_environment(port=args.port, preset=preset))
        return
    serve(port=args.port, gpu_slots=args.gpu_slots, preset=preset)


def _cmd_sql(args: argparse.Namespace) -> None:
    from painting_ml.results.queries import list_queries

    if args.list or not args.name:
        for q in list_queries():
            usage = " ".join(f"[{p.name}={p.default}]" if p.default else f"{p.name}=..." for p in q.params)
            print(f"{q.name:<22} {q.description}" + (f"\n{'':<22} params: {usage}" if usage else ""))
        return
    params: dict[str, str] = {}
    for pair in args.param or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PaintingMLError(f"--param {pair!r}: write name=value")
        params[key.strip()] = value
    _check_query_params(params)
    columns, rows = _run_query(args.name, params)
    print_rows(columns, rows, "json" if args.json else "csv" if args.csv else "table")


# The range of the named queries' parameters that are numbers; run ids must also exist.
_PARAM_RANGES = {"limit": int_in(1, 1_000_000, "a limit"), "run_id": RUN_ID,
                 "dataset_version_id": int_in(1, 2**31 - 1, "a dataset version id")}


def _check_query_params(params: dict[str, str]) -> None:
    for name, check in _PARAM_RANGES.items():
        if name in params:
            try:
                value = check(params[name])
            except argparse.ArgumentTypeError as exc:
                raise PaintingMLError(f"--param {name}={params[name]!r}: {exc}") from None
            if name == "run_id":
                require_run(value)


def _run_query(name: str, params: dict[str, str]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run a named query; a value the database refuses (SQLSTATE class 22) is a user error."""
    import psycopg

    from painting_ml.results.queries import run_query

    try:
        return run_query(name, params)
    except psycopg.errors.DataError as exc:
        raise PaintingMLError(f"query {name!r} refused a parameter value: "
                              f"{exc.diag.message_primary or exc}") from None


def _cmd_runs(args: argparse.Namespace) -> None:
    from painting_ml.learn.run_status import sweep_lost_runs

    sweep_lost_runs()  # a training whose process vanished shows as lost, never running forever
    columns, rows = _run_query("compare_runs", {"limit": str(args.limit)})
    if not args.json:
        print_rows(columns, rows, "table")
        return
    # JSON also carries each run's lineage: code, data, config, model key and sha256, wandb id.
    from painting_ml.core import db

    ids = [r[columns.index("run_id")] for r in rows]
    with db.connect() as conn:
        lineage = {r["run_id"]: r for r in db.fetch_dicts(conn, db.sql("runs", "lineage_of_runs"), {"ids": ids})}
    extra = [c for c in next(iter(lineage.values()), {}) if c not in columns]
    print_rows(columns + extra, [tuple(r) + tuple(lineage.get(i, {}).get(c) for c in extra)
                                 for r, i in zip(rows, ids, strict=True)], "json")


def _cmd_gc(args: argparse.Namespace) -> None:
    from painting_ml.pipeline import gc_step

    out = gc_step(dry_run=args.dry_run, keep_runs=args.keep_runs)
    pruned = ", ".join(map(str, out["runs_pruned"])) or "none"
    kinds = ", ".join(f"{k} {v['files']}" for k, v in out["by_kind"].items() if v["files"])
    _emit(args, out, f"{'would free' if out['dry_run'] else 'freed'} {out['files']} files, "
                     f"{out['bytes'] / 1e6:.1f} MB ({kinds or 'nothing to remove'}); runs pruned: {pruned}; "
                     f"runs kept: {len(out['kept_runs'])}")


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    print(json.dumps(payload) if getattr(args, "json", False) else text)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="painting-ml", description="Painter-attribution retraining system.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate a painting set in the Kaggle layout")
    p.add_argument("--out", required=True, help="destination folder")
    p.add_argument("--artists", type=int_in(1, 1000), default=10)
    p.add_argument("--per-artist", type=int_in(1, 100_000), default=40)
    p.add_argument("--size", type=int_in(8, 4096), default=96, help="long side of the images in pixels")
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    p.add_argument("--test-only", type=int_in(0, 1000), default=2, help="extra artists that appear only in test/")
    p.add_argument("--broken", type=int_in(0, 100_000), default=3, help="files made unreadable on purpose")
    p.add_argument("--mislabel", type=positive_float(0.5), default=0.0,
                   help="share of the paintings whose CSV rows name a wrong artist (truth in mislabelled.csv)")
    p.add_argument("--mislabel-kind", choices=["uniform", "confusable"], default="uniform",
                   help="uniform: any other artist; confusable: the painter's look-alike partner")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("ingest", help="load a Kaggle-layout folder into Postgres (rejects recorded)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--full", action="store_true",
                   help="decode every image again, even when the folder or the file is unchanged")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("migrate", help="create or update the painting database schema")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("config", help="print the run-config schema (JSON schema, or the README's markdown table)")
    p.add_argument("--markdown", action="store_true", help="the configuration table of README.md")
    p.add_argument("--presets", action="store_true",
                   help="the named presets of `run --preset` and `airflow --preset` (JSON: name -> options)")
    p.set_defaults(func=_cmd_config)

    for name, func, text in (
            ("run", _cmd_run, "run every retraining step in this process (no Airflow)"),
            ("train", _cmd_train, "ingest, select, split, augment and train one run (resumable by --run-key)")):
        p = sub.add_parser(name, help=text)
        _add_config_flags(p)
        p.add_argument("--run-key", help="stable key: the same key resumes that run instead of starting over")
        p.set_defaults(func=func)

    p = sub.add_parser("evaluate", help="evaluate a trained run: metrics, confusion, open-set, verification")
    p.add_argument("--run-id", type=RUN_ID, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("promote", help="run the promotion gate on an evaluated run (champion if it passes)")
    p.add_argument("--run-id", type=RUN_ID, required=True)
    p.add_argument("--max-recall-drop", type=positive_float(100.0),
                   help="points any artist's recall may fall (0 to 100; default: the run's config)")
    p.add_argument("--min-macro-f1", type=positive_float(1.0),
                   help="the gate's floor: never promote under this test macro-F1 (default: the run's config)")
    p.add_argument("--allow-artist-set-change", action="store_true", default=None,
                   help="promote even when the champion was trained on another artist set")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_promote)

    p = sub.add_parser("report", help="render a run's mosaics, plots and report.html; print its path")
    p.add_argument("--run-id", type=RUN_ID, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("predict", help="top-k artists for images, from the champion model")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int_in(1, 1000, "top-k"), default=3)
    p.add_argument("--run-id", type=RUN_ID, help="use this run's model instead of the champion")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("verify", help="probability that two paintings share a painter")
    p.add_argument("image_a", metavar="A")
    p.add_argument("image_b", metavar="B")
    p.add_argument("--run-id", type=RUN_ID, help="use this run's model instead of the champion")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("metrics", help="print a run's per-artist metrics (latest run by default)")
    p.add_argument("--run-id", type=RUN_ID)
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
    p.add_argument("--limit", type=int_in(1, 10_000, "a limit"), default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser("gc", help="remove the files of old runs and unused dataset copies (retention policy)")
    p.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    p.add_argument("--keep-runs", type=int_in(0, 1_000_000, "a run count"), default=None,
                   help="newest runs whose files are kept besides the champion and promoted runs "
                        "(default PAINTING_KEEP_RUNS)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_gc)

    p = sub.add_parser("demo", help="generate a set and run the painting_retrain DAG with real Airflow")
    p.add_argument("--artists", type=int_in(2, 1000), default=10)
    p.add_argument("--per-artist", type=int_in(1, 100_000), default=40)
    p.add_argument("--epochs", type=int_in(1, 1000), default=3)
    p.add_argument("--image-size", type=int_in(32, 1024), default=64)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("airflow", help="the Airflow UI on this machine (LocalExecutor) until Ctrl-C")
    p.add_argument("--port", type=int_in(1, 65535, "a TCP port"), default=8080)
    p.add_argument("--gpu-slots", type=int_in(1, 1024, "a slot count"), default=1,
                   help="slots of the gpu pool (one per GPU)")
    from painting_ml.core.config import PRESETS

    p.add_argument("--preset", choices=[*sorted(PRESETS), "none"],
                   help="the trigger form's defaults: a preset of run options (`painting-ml config --presets`), or "
                        "none for the production recipe (default: cpu, unless PAINTING_RUN_DEFAULTS names the "
                        "deployment's defaults file)")
    p.add_argument("--print-env", action="store_true",
                   help="print the export lines that point the airflow CLI at this Airflow's metadata database, "
                        "DAGs and run defaults, and exit: eval \"$(painting-ml airflow --print-env)\" in another "
                        "shell while it runs (pass the same --port and --preset)")
    p.set_defaults(func=_cmd_airflow)
    from painting_ml.cli import champion  # export, attribute, similar, attributions

    champion.register(sub)
    from painting_ml.cli import audit  # painting-ml audit

    audit.register(sub)
    from painting_ml.cli import review  # list, keep, relabel, unsure, history, --undo

    review.register(sub)
    return parser


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@functools.lru_cache(maxsize=1)
def _parser() -> argparse.ArgumentParser:
    # Built once per process: generating the config flags from the schema is not free, and
    # parse_args never changes the parser.
    return build_parser()


#: The commands that read or write the artifact store: each proves it usable first (credentials,
#: endpoint, bucket, a write) and reports a problem in one line.
STORE_COMMANDS = frozenset({"run", "train", "evaluate", "promote", "report", "predict", "verify", "gc", "export",
                            "attribute", "similar", "audit"})


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except UsageError as exc:
        print(f"{exc.prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import psycopg

    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if args.command in STORE_COMMANDS:  # an unusable store is one line before any work starts
            from painting_ml.core.store import check_store

            check_store()
        args.func(args)
    except Stopped as exc:
        print(f"painting-ml {args.command}: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except PaintingMLError as exc:
        print(f"painting-ml {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except psycopg.errors.UndefinedTable as exc:
        print(f"painting-ml {args.command}: error: the painting database has no schema yet "
              f"({exc.diag.message_primary}); run `painting-ml migrate` first", file=sys.stderr)
        return 2
    except psycopg.Error as exc:  # connect() already turned connection problems into PaintingMLError
        from painting_ml.core.db import redact_url

        message = redact_url(exc.diag.message_primary or type(exc).__name__)
        print(f"painting-ml {args.command}: error: the database refused the request ({message})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
