"""GPU training throughput: ResNet50 at 224 px, batch 256, images/s on in-memory tensors and
through an input path with augmentation, side by side, with their ratio.

Backend-agnostic Keras 3: run with ``KERAS_BACKEND=jax`` on the GPU machine (which has JAX and
PyTorch but no TensorFlow), or the default TensorFlow backend. No tf.data here: the input path is
a uint8 image cache in host memory (what make_dataset caches), shuffled and batched by a
keras.utils.PyDataset, transferred each step, with the model's fused RandomAffine augmentation on
the device. bf16 mixed precision and XLA (jit_compile) are on when a GPU is present
(painting_ml.learn.accelerator).

    KERAS_BACKEND=jax python bench/gpu_train.py                       # on a GPU: 224 px, batch 256
    .venv/bin/python bench/gpu_train.py --size 64 --batch 16 --steps 6   # CPU smoke size

Anchor: NVIDIA's TF ResNet50 reaches 2,375 img/s on one A100 with AMP+XLA. Target on one H200: >= 3,000.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per feed")
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()

    import keras
    import numpy as np

    from painting_ml.learn.accelerator import apply, plan
    from painting_ml.core.config import RunConfig
    from painting_ml.learn.models import compile_model, create_model

    accel = plan()
    print(f"backend {accel.backend}, {accel.gpus} GPU(s), mixed precision {accel.mixed_precision}, "
          f"jit_compile {accel.jit_compile}; ResNet50 {args.size}px batch {args.batch}", flush=True)
    rng = np.random.default_rng(0)
    n_cache = args.batch * 4
    cache = rng.integers(0, 256, (n_cache, args.size, args.size, 3), dtype=np.uint8)
    labels = rng.integers(0, args.classes, n_cache).astype("int32")

    def build(online_augment: bool):
        cfg = RunConfig(data_dir="-", image_size=args.size, batch_size=args.batch, online_augment=online_augment,
                        optimizer="sgd", learning_rate=0.01, weights=None, fine_tune="all",
                        gradient_accumulation_steps=1)
        with apply(accel):
            model = create_model(cfg, args.classes)
            compile_model(model, cfg, jit_compile=accel.jit_compile)
        return model

    class CacheFeed(keras.utils.PyDataset):
        """Shuffled batches from the uint8 host cache (no TensorFlow needed)."""

        def __init__(self, steps):
            super().__init__()
            self.steps = steps

        def __len__(self):
            return self.steps

        def __getitem__(self, i):
            idx = rng.integers(0, n_cache, args.batch)
            return cache[idx], labels[idx]

    def rate(model, feed_fn) -> float:
        x, y = feed_fn(0)
        model.train_on_batch(x, y)  # compile / trace
        model.train_on_batch(x, y)
        t = time.perf_counter()
        for i in range(args.steps):
            x, y = feed_fn(i)
            loss = model.train_on_batch(x, y)
        float(np.ravel(np.asarray(loss))[0])  # wait for the device (loss first, then metrics)
        return args.steps * args.batch / (time.perf_counter() - t)

    plain = build(online_augment=False)
    x_dev = keras.ops.convert_to_tensor(cache[: args.batch])
    y_dev = keras.ops.convert_to_tensor(labels[: args.batch])
    in_memory = rate(plain, lambda i: (x_dev, y_dev))
    print(f"in-memory tensors (no augmentation):       {in_memory:9.1f} img/s", flush=True)
    del plain

    augmented = build(online_augment=True)
    feed = CacheFeed(args.steps + 2)
    through_path = rate(augmented, lambda i: feed[i])
    print(f"input path + online augmentation:          {through_path:9.1f} img/s", flush=True)
    print(f"RATIO input path / in-memory: {through_path / in_memory:.2f}; "
          f"in-memory {in_memory:.0f} img/s vs target 3,000 on one H200")


if __name__ == "__main__":
    main()
