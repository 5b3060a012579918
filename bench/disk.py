"""Disk use of the artifact store: three small runs (a sweep of three optimizers, each with its own
seed, so each its own dataset version), measured as they are left after training, then after
``gc`` with ``keep_runs=1``. Prints bytes per run and per store folder side by side.

    .venv/bin/python bench/disk.py            # ~3 minutes on 2 CPUs (resnet18, 32 px, 1 epoch each)

gc runs with no grace period and no live-version window (``grace=0, live_for=0``), so it removes
now what a daily ``painting_gc`` would remove a week later. There is no champion (``run`` does not
promote), so only the newest run keeps its folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("WANDB_MODE", "offline")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import machine, scratch_database  # noqa: E402 - imported after the environment and sys.path above are set

SWEEP = (("adam", 1), ("rmsprop", 2), ("sgd", 3))


def _config(data_dir: Path, optimizer: str, seed: int):
    """The tests' tiny CPU run (tests/conftest.py tiny_run_config) with one offline augmentation."""
    from painting_ml.core.config import CPU_DEMO, RunConfig

    return RunConfig(**{**CPU_DEMO, "data_dir": str(data_dir), "n_artists": 3, "backbone": "resnet18",
                        "image_size": 32, "batch_size": 16, "epochs": 1, "online_augment": False,
                        "augment": ("hflip",), "wandb": False, "head_units": 16, "early_stopping_patience": 0,
                        "min_macro_f1": 0.0, "optimizer": optimizer, "seed": seed})


def _usage(store) -> dict[str, int]:
    """Bytes under each top-level store folder and each run folder (``runs/<folder>``), and of each
    run's model (``runs/<folder>/model.keras``)."""
    out: dict[str, int] = {}
    for key, size in store.list().items():
        parts = key.split("/")
        top = "/".join(parts[:2]) if parts[0] == "runs" else parts[0]
        out[top] = out.get(top, 0) + size
        if parts[0] == "runs" and parts[-1] == "model.keras":
            out[key] = size
    return out


def _mb(n: int) -> str:
    return f"{n / 1e6:8.2f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pm_disk_") as tmp:
        os.environ["PAINTING_HOME"] = tmp
        os.environ.pop("PAINTING_ARTIFACTS_URL", None)
        from painting_ml.core import settings

        settings.reload_settings()
        with scratch_database() as url:
            from painting_ml import pipeline
            from painting_ml.core import db
            from painting_ml.core.store import get_store
            from painting_ml.data.synth import generate
            from painting_ml.results.retention import collect_garbage

            data = Path(tmp) / "data"
            generate(data, artists=3, per_artist=12, size=48, seed=7, test_only_artists=1, broken=0)
            runs = []
            for optimizer, seed in SWEEP:
                summary = pipeline.run_all(_config(data, optimizer, seed), run_key=f"bench:disk:{optimizer}")
                runs.append((summary["run_id"], optimizer))
            store = get_store()
            before = _usage(store)
            files = sorted(store.list())
            with db.connect(url) as conn:
                dirs = {rid: db.fetch_one(conn, db.sql("runs", "get_run"), {"id": rid})["run_dir"] for rid, _ in runs}
            report = collect_garbage(keep_runs=1, grace=timedelta(0), live_for=timedelta(0))
            after = _usage(store)

    print(f"disk use of the artifact store after {len(runs)} small runs ({machine()}); "
          "gc: keep_runs=1, no grace")
    print(f"{'':<26}{'without gc':>14}{'with gc':>14}")
    runs_before = sum(before.get(dirs[rid], 0) for rid, _ in runs)
    for rid, optimizer in runs:
        folder = dirs[rid]
        model = f"{folder}/model.keras"
        print(f"{f'run {rid} ({optimizer})':<26}{_mb(before.get(folder, 0)):>14}{_mb(after.get(folder, 0)):>14}"
              f"   model.keras {_mb(before.get(model, 0)).strip()}, "
              f"{len([k for k in files if k.startswith(folder + '/')])} files")
    for top in sorted({k for k in before if not k.startswith("runs/")}):
        print(f"{top + '/ (shared)':<26}{_mb(before[top]):>14}{_mb(after.get(top, 0)):>14}")
    total_before = sum(v for k, v in before.items() if not k.endswith("/model.keras"))
    total_after = sum(v for k, v in after.items() if not k.endswith("/model.keras"))
    print(f"{'per run (mean)':<26}{_mb(runs_before // len(runs)):>14}")
    print(f"{'total':<26}{_mb(total_before):>14}{_mb(total_after):>14}"
          f"   ({total_after / total_before:.0%} kept)" if total_before else "")
    print(f"gc removed {report['files']} files, {report['bytes']} bytes; runs pruned {report['runs_pruned']}; "
          f"by kind { {k: v for k, v in report['by_kind'].items() if v['files']} }")
    if args.json:
        print(json.dumps({"runs": {str(rid): {"optimizer": o, "before": before.get(dirs[rid], 0),
                                             "after": after.get(dirs[rid], 0)} for rid, o in runs},
                          "before": before, "after": after, "gc": report}))


if __name__ == "__main__":
    main()
