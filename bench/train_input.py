"""Is training input-bound? Images/s of training epochs of the same model and batch size, fed
(a) through the real input path (painting_ml.data.inputs.make_dataset: decode, resize, cache, prefetch;
the model's online augmentation on) and (b) from the same images already in memory as tensors.

    .venv/bin/python bench/train_input.py [--images 256] [--size 64] [--epochs 2]

One compiled model serves both feeds, warmed up first (graph tracing is not counted); the median
epoch of each feed is compared. Target ratio (a)/(b) >= 0.90 at 64 px on CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from _common import machine  # noqa: E402 - imported after the environment above is set


class EpochTimer:
    def __init__(self):
        self.times: list[float] = []

    def callback(self):
        import keras

        timer = self

        class _CB(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                timer.times.append(time.perf_counter() - self.t)

        return _CB()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()

    import keras
    import numpy as np

    from painting_ml.core.config import RunConfig
    from painting_ml.data.inputs import make_dataset
    from painting_ml.data.synth import generate
    from painting_ml.learn.models import compile_model, create_model

    work = Path(tempfile.mkdtemp(prefix="pm_bench_train_"))
    generate(work, artists=8, per_artist=args.images // 8, size=128, seed=0, test_only_artists=0, broken=0)
    paths = sorted(str(p) for p in (work / "train").glob("*.jpg"))[: args.images]
    labels = [i % 8 for i in range(len(paths))]
    n = len(paths) - len(paths) % args.batch  # whole batches only, same work for both feeds
    paths, labels = paths[:n], labels[:n]
    print(f"ResNet50 at {args.size}px, batch {args.batch}, {n} images, {args.epochs} timed epochs per feed; "
          f"{machine()}", flush=True)

    cfg = RunConfig(data_dir=str(work), image_size=args.size, batch_size=args.batch, weights=None, fine_tune="all",
                    gradient_accumulation_steps=1)
    keras.utils.set_random_seed(0)
    model = create_model(cfg, 8)
    compile_model(model, cfg)

    ds = make_dataset(paths, labels, image_size=args.size, batch_size=args.batch, shuffle=True, seed=0)
    x_mem = np.concatenate([x.numpy() for x, _ in make_dataset(paths, labels, image_size=args.size,
                                                               batch_size=args.batch, shuffle=False, seed=0)])
    mem = __import__("tensorflow").data.Dataset.from_tensor_slices((x_mem, np.array(labels))).batch(args.batch)
    mem = mem.cache().prefetch(2)

    model.fit(ds, epochs=1, verbose=0)   # warm-up: traces the train step, fills the path's cache
    model.fit(mem, epochs=1, verbose=0)  # and the in-memory feed's
    real, in_mem = EpochTimer(), EpochTimer()
    for _ in range(args.epochs):  # interleaved, so machine noise hits both alike
        model.fit(ds, epochs=1, verbose=0, callbacks=[real.callback()])
        model.fit(mem, epochs=1, verbose=0, callbacks=[in_mem.callback()])
    a = n / statistics.median(real.times)
    b = n / statistics.median(in_mem.times)
    print(f"real input path:     {a:6.1f} img/s (epochs {[round(n / t, 1) for t in real.times]})")
    print(f"in-memory tensors:   {b:6.1f} img/s (epochs {[round(n / t, 1) for t in in_mem.times]})")
    print(f"RATIO input path / in-memory: {a / b:.2f} (target >= 0.90)")


if __name__ == "__main__":
    main()
