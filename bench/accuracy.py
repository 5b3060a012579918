"""Does it learn? Test accuracy of ResNet50 and ResNet18 (artist only) and of a multi-task
ResNet50 (artist + style + genre) on one generated 10-artist set at 64 px, against chance.

    .venv/bin/python bench/accuracy.py [--artists 10] [--per-artist 40] [--epochs 5] [--size 64]

Every model runs the whole engine (ingest, selection, split, augmentation, training,
evaluation) in a throw-away database, on the same dataset version and seed. Prints one table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("WANDB_MODE", "disabled")
from _common import machine, scratch_database  # noqa: E402 - imported after the environment above is set

RUNS = [
    ("resnet50", ("artist",)),
    ("resnet18", ("artist",)),
    ("resnet50", ("artist", "style", "genre")),
]


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artists", type=int, default=10)
    ap.add_argument("--per-artist", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PAINTING_HOME"] = tmp
        from painting_ml.core.settings import reload_settings

        reload_settings()
        from painting_ml.core.config import CPU_DEMO, RunConfig
        from painting_ml.data.synth import generate
        from painting_ml.pipeline import run_all

        data = Path(tmp) / "data"
        generate(data, artists=args.artists, per_artist=args.per_artist, size=96, seed=0)
        rows = []
        with scratch_database():
            for backbone, targets in RUNS:
                cfg = RunConfig(**{**CPU_DEMO, "data_dir": str(data), "n_artists": args.artists, "epochs": args.epochs,
                                   "image_size": args.size, "backbone": backbone, "targets": targets, "wandb": False})
                t0 = time.perf_counter()
                s = run_all(cfg)
                rows.append((backbone, "+".join(targets), s, time.perf_counter() - t0))
        print(f"# accuracy on {args.artists} generated artists x {args.per_artist} at {args.size} px, "
              f"{args.epochs} epochs ({machine()})")
        print("| backbone | targets | artist test acc | top-3 | macro-F1 | style acc | genre acc | "
              "open-set AUROC | verif. AUC seen / unseen | chance | minutes |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for backbone, targets, s, secs in rows:
            t = s["targets"]
            v = s["verification"]
            print(f"| {backbone} | {targets} | {s['test_accuracy']:.3f} | {s['top3_accuracy']:.3f} | "
                  f"{s['macro_f1']:.3f} | {fmt(t.get('style', {}).get('accuracy'))} | "
                  f"{fmt(t.get('genre', {}).get('accuracy'))} | {fmt(s['open_set']['auroc'])} | "
                  f"{fmt(v['seen']['embedding_cosine']['auc'])} / {fmt(v['unseen']['embedding_cosine']['auc'])} | "
                  f"{s['chance']:.3f} | {secs / 60:.1f} |")


if __name__ == "__main__":
    main()
