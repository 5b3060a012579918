"""What a copy on both sides of the split does to test accuracy: one generated set with copies of
paintings (same bytes, a re-encoded 1.5x copy, a grey copy), trained twice on the same config and
seed — once with the group-aware split (copies of a picture in one split: the default) and once
with a split that ignores the groups (each file on its own: what a split without painting identity
does). Prints each run's test accuracy and, for the naive split, the accuracy on test paintings
whose copy sits in train vs the rest: the inflation a leaky split reports.

    .venv/bin/python bench/leakage.py [--artists 8] [--per-artist 30] [--copies 120] [--epochs 10] [--seeds 3]

Each seed is one pair of runs. The two runs' test sets differ (different splits), so the first
median compares two samples; the second compares, within the leaky run, test paintings whose copy
sat in train with the rest: the memorisation a leaky split would have reported as accuracy.

The naive run skips the data-quality gate (which fails any version with a group across splits).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("WANDB_MODE", "disabled")
from _common import machine, scratch_database  # noqa: E402 - imported after the environment above is set

LEAKED = """
SELECT p.filename, p.true_artist = p.predicted_artist AS correct,
       EXISTS (SELECT 1 FROM painting_groups g JOIN painting_groups h
                   ON h.data_root = g.data_root AND h.group_key = g.group_key AND h.filename <> g.filename
               JOIN dataset_items t ON t.version_id = r.dataset_version_id AND t.filename = h.filename
                   AND t.split = 'train'
               WHERE g.data_root = v.data_root AND g.filename = p.filename) AS copy_in_train
FROM predictions p JOIN runs r ON r.id = p.run_id JOIN dataset_versions v ON v.id = r.dataset_version_id
WHERE p.run_id = %(run)s
"""


def _accuracy(rows: list[tuple[str, bool, bool]], leaked: bool | None = None) -> tuple[float | None, int]:
    chosen = [r for r in rows if leaked is None or r[2] == leaked]
    return (sum(r[1] for r in chosen) / len(chosen) if chosen else None), len(chosen)


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _naive_run(cfg) -> int:
    """Ingest, select, split ignoring painting groups, augment, train, evaluate; the run id."""
    from unittest import mock

    from painting_ml import pipeline
    from painting_ml.data import versions

    selection = pipeline.select_artists_step(cfg)
    with mock.patch.object(versions, "groups_of_root", lambda conn, root: ({}, set())):
        version_id = pipeline.split_step(cfg, selection)
    pipeline.augment_step(cfg, version_id)
    run_id = pipeline.train_step(cfg, version_id, f"bench:naive:{time.time_ns()}")
    pipeline.evaluate_step(run_id)
    return run_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artists", type=int, default=8)
    ap.add_argument("--per-artist", type=int, default=30)
    ap.add_argument("--copies", type=int, default=120, help="extra paintings that are copies of others")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--seeds", type=int, default=3, help="split and training seeds (one pair of runs each)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PAINTING_HOME"] = tmp
        from painting_ml.core.settings import reload_settings

        reload_settings()
        import psycopg

        from painting_ml import pipeline
        from painting_ml.core.config import CPU_DEMO, RunConfig
        from painting_ml.data.synth import generate

        data = Path(tmp) / "data"
        counts = generate(data, artists=args.artists, per_artist=args.per_artist, size=96, seed=0,
                          copies=args.copies)
        with scratch_database() as url:
            results = []
            for seed in range(args.seeds):
                cfg = RunConfig(**{**CPU_DEMO, "data_dir": str(data), "n_artists": args.artists,
                                   "epochs": args.epochs, "image_size": args.size, "backbone": args.backbone,
                                   "learning_rate": 3e-4, "optimizer": "adam", "wandb": False, "seed": seed,
                                   "early_stopping_patience": 0, "online_augment": False, "augment": ()})
                t0 = time.perf_counter()
                grouped = pipeline.run_all(cfg, run_key=f"bench:grouped:{seed}")["run_id"]
                t1 = time.perf_counter()
                naive = _naive_run(cfg)
                t2 = time.perf_counter()
                with psycopg.connect(url) as conn:
                    rows = {run: [tuple(r) for r in conn.execute(LEAKED, {"run": run}).fetchall()]
                            for run in (grouped, naive)}
                results.append((seed, rows[grouped], rows[naive], t1 - t0, t2 - t1))
    print(f"# leakage: {args.artists} generated artists x {args.per_artist}+ paintings, {counts['copies']} copies, "
          f"{args.backbone} {args.size} px, {args.epochs} epochs, seeds 0-{args.seeds - 1} ({machine()})")
    print("| seed | group-aware split: test acc (n) | ignoring groups: test acc (n) | ignoring groups, test "
          "paintings with a copy in train: acc (n) | ignoring groups, the rest: acc (n) | minutes |")
    print("|---|---|---|---|---|---|")
    gaps, memorised = [], []
    for seed, grouped_rows, naive_rows, t_grouped, t_naive in results:
        cells = [_accuracy(grouped_rows), _accuracy(naive_rows), _accuracy(naive_rows, True),
                 _accuracy(naive_rows, False)]
        if cells[0][0] is not None and cells[1][0] is not None:
            gaps.append(cells[1][0] - cells[0][0])
        if cells[2][0] is not None and cells[3][0] is not None:
            memorised.append(cells[2][0] - cells[3][0])
        print(f"| {seed} | " + " | ".join(f"{fmt(a)} ({n})" for a, n in cells)
              + f" | {(t_grouped + t_naive) / 60:.1f} |")
    if gaps:
        print(f"median test-accuracy gain of the leaky split over the group-aware one: {statistics.median(gaps):+.3f}")
    if memorised:
        print("median accuracy of the leaky split's test paintings with a copy in train over the rest: "
              f"{statistics.median(memorised):+.3f}")

if __name__ == "__main__":
    main()
