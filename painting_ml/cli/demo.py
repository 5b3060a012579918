"""``make demo``: generate a painting set and run the real ``painting_retrain`` DAG end to end,
then ``painting_attribute`` and ``painting_audit``. A few of the generated labels are wrong on
purpose (``MISLABEL``); the demo ends with the audit's top issues and how many of the planted
wrong labels it found.

Airflow runs in a child process (``airflow dags test``) against SQLite for its own metadata; the
painting database is the embedded pgserver PostgreSQL unless ``PAINTING_DB_URL`` is set.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from painting_ml.core import db
from painting_ml.core.config import CPU_DEMO
from painting_ml.core.settings import get_settings
from painting_ml.orchestration.local_airflow import airflow_env, run_airflow

#: The demo's model on top of :data:`CPU_DEMO`: the project's ResNet18 — about a quarter of
#: ResNet50's graph-tracing time and half its FLOPs per image, so the three trainings, their
#: evaluations and the champion's export and scoring take about half the CPU time — at a learning
#: rate of 3e-4: at 1e-3 Adam and RMSprop from scratch are erratic in 48 steps (test accuracy
#: 0.56-0.86 on the demo set), at 3e-4 all three optimizers reach 0.90-0.95 at 32 and 64 px.
DEMO_MODEL = {"backbone": "resnet18", "learning_rate": 3e-4}

#: The share of the generated paintings whose CSV rows name a wrong artist (``mislabelled.csv``
#: holds the truth): what the audit at the end should find.
MISLABEL = 0.03
#: The audit's folds: each painting is judged by the one of 3 models that did not train on it
#: (3 more trainings of the demo's size; 5 is the production default).
AUDIT_FOLDS = 3


def run_demo(artists: int = 10, per_artist: int = 40, epochs: int = 3, image_size: int = 64) -> int:
    """Run the demo; return the evaluated run id."""
    from painting_ml.cli.console import format_artist_table, format_summary
    from painting_ml.data.identity import describe_groups
    from painting_ml.data.synth import generate
    from painting_ml.learn.evaluation import artist_table

    t0 = time.perf_counter()
    settings = get_settings()
    data_dir = settings.generated_data_dir / "demo"
    counts = generate(data_dir, artists=artists, per_artist=per_artist, size=96, seed=0, copies=6, mislabel=MISLABEL)
    print(f"[demo] generated {counts['images']} paintings of {artists}+2 artists in {data_dir}; "
          f"{counts['mislabelled']} of them carry a wrong artist on purpose", flush=True)
    url = db.resolve_url(settings)
    db.migrate(url)
    print(f"[demo] painting database: {db.redact_url(url)}", flush=True)
    env = airflow_env(settings, url)
    run_airflow(["db", "migrate"], env, capture=True)
    # The CPU-sized config, passed explicitly: the DAG's defaults are the production recipe.
    conf = {**CPU_DEMO, **DEMO_MODEL, "data_dir": str(data_dir), "n_artists": artists, "epochs": epochs,
            "image_size": image_size, "batch_size": 32, "optimizers": ["adam", "rmsprop", "sgd"]}
    print(f"[demo] airflow dags test painting_retrain -c '{json.dumps(conf)}'", flush=True)
    run_airflow(["dags", "test", "painting_retrain", "-c", json.dumps(conf)], env)
    print(f"[demo] {describe_groups(data_dir, url)}", flush=True)
    with db.connect(url) as conn:
        decision = db.fetch_dicts(conn, db.sql("runs", "latest_decision"))[0]
        run = db.fetch_dicts(conn, db.sql("runs", "run_summary"), {"id": decision["run_id"]})[0]
        sweep = db.fetch_dicts(conn, db.sql("runs", "sweep_of_run"), {"id": decision["run_id"]})
    print("\n[demo] optimizer comparison (one mapped training each):")
    for r in sweep:
        print(f"[demo]   run {r['id']:>3} {r['optimizer']:<8} best val acc {r['best_val_accuracy']:.3f}  "
              f"test acc {r['test_accuracy']:.3f}  macro-F1 {r['macro_f1']:.3f}")
    verdict = "promoted to champion" if decision["promoted"] else "not promoted"
    print(f"[demo] best: run {run['id']}; promotion gate: {verdict} — {'; '.join(decision['reasons'])}")
    print(f"\n[demo] per-artist test metrics of run {run['id']} (read back from Postgres):")
    print(format_artist_table(artist_table(run["id"], url)))
    print("[demo] " + format_summary(run["summary"]))
    from painting_ml.core.store import get_store

    folder = get_store().uri(run["run_dir"])  # the run's folder in the artifact store
    print(f"[demo] mosaics: {folder}/mosaics")
    # The promotion published the champion Asset; `dags test` does not follow Asset triggers, so
    # the attribution DAG is run here the way the scheduler would start it.
    print("\n[demo] airflow dags test painting_attribute   (the champion scores the whole catalog)", flush=True)
    run_airflow(["dags", "test", "painting_attribute"], env)
    with db.connect(url) as conn:
        scored = db.fetch_dicts(conn, db.sql("attribution", "demo_summary"))
    for r in scored:
        print(f"[demo] champion run {r['run_id']} attributed {r['scored']} paintings; "
              f"{r['doubted']} labelled ones look like another artist's "
              f"(`painting-ml sql possible_misattributions`, `painting-ml similar <image>`)")
    audit_conf = {k: v for k, v in conf.items() if k != "optimizers"}
    audit_conf.update(folds=AUDIT_FOLDS, audit_recipe="full")
    print(f"\n[demo] airflow dags test painting_audit   ({AUDIT_FOLDS} out-of-fold trainings judge every label)",
          flush=True)
    t_audit = time.perf_counter()
    run_airflow(["dags", "test", "painting_audit", "-c", json.dumps(audit_conf)], env)
    print_audit(data_dir, url, time.perf_counter() - t_audit)
    print(f"[demo] finished in {time.perf_counter() - t0:.0f} s; the run's report:")
    print(f"{folder}/report.html")
    return int(run["id"])


def print_audit(data_dir: Path, url: str, seconds: float, top: int = 10) -> None:
    """The latest audit's top issues, each marked when it is one of the planted wrong labels, and
    the recall and precision of its flagged list on them."""
    from painting_ml.data.synth import read_mislabelled
    from painting_ml.results.label_issues import recent_audits, top_issues

    audit = recent_audits(1, url)[0]
    flagged = top_issues(audit["id"], limit=1_000_000, url=url)
    planted = read_mislabelled(data_dir)
    print(f"[demo] audit {audit['id']} ({audit['folds']} folds, recipe {audit['recipe']}, {seconds:.0f} s): "
          f"{audit['flagged']} of {audit['audited']} paintings flagged; top {min(top, len(flagged))} "
          "(`painting-ml review list`, or the review page in the Airflow UI):")
    print(f"[demo]   {'rank':>4}  {'file':<12} {'catalog artist':<24} {'suggested artist':<24} {'quality':>7}  planted")
    for i in flagged[:top]:
        truth = planted.get(i["filename"])
        mark = "no"
        if truth is not None:
            mark = "yes, right artist" if truth["true_artist"] == i["suggested_artist"] else "yes"
        print(f"[demo]   {i['rank']:>4}  {i['filename']:<12} {i['catalog_artist']:<24.24} "
              f"{i['suggested_artist']:<24.24} {i['quality']:>7.3f}  {mark}")
    found = sum(i["filename"] in planted for i in flagged)
    if planted:
        print(f"[demo] planted wrong labels found: {found} of {len(planted)} (recall {found / len(planted):.2f}); "
              f"precision of the flagged list {found / max(1, len(flagged)):.2f} "
              f"(the truth: {data_dir / 'mislabelled.csv'})")
