"""What the memory of a 224 px ResNet50 training step is made of, measured.

Each batch size runs in a fresh process: the production model and optimizer (RunConfig's defaults:
ResNet50, Adam, gradient accumulation 4, every stage trainable as in phase 2's widest case) take a
few training steps on random 224 px images, and the process's resident memory is read at each
stage: after TensorFlow/Keras load, after the model is built, after the first step (optimizer state,
gradient accumulators, the traced step) and the peak over the steps. Fitting peak = fixed + per_image
× batch over the batch sizes separates what does not grow with the batch (runtime, weights, optimizer)
from what does (activations kept for the backward pass).

    .venv/bin/python bench/train_memory.py                 # batch 4, 8, 16 (~3 minutes on 2 CPUs)
    .venv/bin/python bench/train_memory.py --batches 16 32
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
SIZE = 224


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(batch: int, steps: int) -> dict:
    import numpy as np

    out = {"batch": batch, "start_mb": _rss_mb()}
    import keras  # noqa: F401  (TensorFlow and Keras loaded: the runtime's share)

    from painting_ml.core.config import RunConfig
    from painting_ml.learn.models import compile_model, create_model, set_trainable

    out["runtime_mb"] = _rss_mb()
    cfg = RunConfig(data_dir="/d", weights=None, batch_size=batch)
    model = create_model(cfg, {"artist": 10})
    set_trainable(model, "all", 5, freeze_bn=False)
    compile_model(model, cfg, 1e-3, False)
    out["params_m"] = model.count_params() / 1e6
    out["model_mb"] = _rss_mb()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, 10, batch)
    model.train_on_batch(x, y)
    out["first_step_mb"] = _rss_mb()
    for _ in range(steps - 1):
        model.train_on_batch(x, y)
    out["after_steps_mb"] = _rss_mb()
    out["peak_mb"] = _peak_mb()
    out["optimizer_vars_mb"] = sum(np.prod(v.shape) * 4 for v in model.optimizer.variables) / 2**20
    out["weights_mb"] = sum(np.prod(w.shape) * 4 for w in model.weights) / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps)))
        return
    rows = []
    for b in args.batches:
        proc = subprocess.run([sys.executable, __file__, "--child", str(b), "--steps", str(args.steps)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"batch {b} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"batch {b:>3}: python {r['start_mb']:5.0f} MB, + TF/Keras {r['runtime_mb'] - r['start_mb']:5.0f} MB, "
              f"+ model built {r['model_mb'] - r['runtime_mb']:5.0f} MB ({r['params_m']:.1f} M params, "
              f"weights {r['weights_mb']:.0f} MB), after step 1 {r['first_step_mb']:5.0f} MB (optimizer variables "
              f"{r['optimizer_vars_mb']:.0f} MB), peak {r['peak_mb']:5.0f} MB", flush=True)
    if len(rows) >= 2:
        import numpy as np

        b = np.array([r["batch"] for r in rows], float)
        peak = np.array([r["peak_mb"] for r in rows], float)
        per_image, fixed = np.polyfit(b, peak, 1)
        r0 = rows[0]
        print(f"FIT peak = {fixed:.0f} MB + {per_image:.0f} MB x batch  "
              f"(fixed: TF/Keras runtime {r0['runtime_mb']:.0f} MB, weights {r0['weights_mb']:.0f} MB, optimizer "
              f"state + gradient accumulators {r0['optimizer_vars_mb']:.0f} MB, gradients, the traced step; "
              f"per image: activations kept for the backward pass)")
        print(f"at batch 16: {fixed + 16 * per_image:.0f} MB; at batch 32: {fixed + 32 * per_image:.0f} MB")


if __name__ == "__main__":
    main()
