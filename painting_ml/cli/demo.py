"""``make demo``: generate a painting set and run the real ``painting_retrain`` DAG end to end.

Airflow runs in a child process (``airflow dags test``) against SQLite for its own metadata; the
painting database is the embedded pgserver PostgreSQL unless ``PAINTING_DB_URL`` is set.
"""

from __future__ import annotations

import json
import time

from painting_ml.core import db
from painting_ml.core.config import CPU_DEMO
from painting_ml.orchestration.local_airflow import airflow_env, run_airflow
from painting_ml.core.settings import get_settings


def run_demo(artists: int = 10, per_artist: int = 40, epochs: int = 3, image_size: int = 64) -> int:
    """Run the demo; return the evaluated run id."""
    from painting_ml.cli.console import format_artist_table, format_summary
    from painting_ml.learn.evaluation import artist_table
    from painting_ml.data.synth import generate

    t0 = time.perf_counter()
    settings = get_settings()
    data_dir = settings.generated_data_dir / "demo"
    counts = generate(data_dir, artists=artists, per_artist=per_artist, size=96, seed=0)
    print(f"[demo] generated {counts['images']} paintings of {artists}+2 artists in {data_dir}", flush=True)
    url = db.resolve_url(settings)
    db.migrate(url)
    print(f"[demo] painting database: {db.redact_url(url)}", flush=True)
    env = airflow_env(settings, url)
    run_airflow(["db", "migrate"], env, capture=True)
    # The CPU-sized config, passed explicitly: the DAG's defaults are the production recipe.
    conf = {**CPU_DEMO, "data_dir": str(data_dir), "n_artists": artists, "epochs": epochs, "image_size": image_size,
            "batch_size": 32, "optimizers": ["adam", "rmsprop", "sgd"]}
    print(f"[demo] airflow dags test painting_retrain -c '{json.dumps(conf)}'", flush=True)
    run_airflow(["dags", "test", "painting_retrain", "-c", json.dumps(conf)], env)
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
    print(f"[demo] finished in {time.perf_counter() - t0:.0f} s; the run's report:")
    print(f"{folder}/report.html")
    return int(run["id"])
