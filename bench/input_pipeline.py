"""Input-pipeline benchmark: the seed's ImageDataGenerator path vs this project's path.

Both deliver 224 px batches of 32, with the same augmentation family (rotation 20°, shift 0.2,
shear 0.2, zoom 0.2, horizontal flip), ready for the model, from the same generated paintings
(``--source``, default 1600×1200: the Kaggle set's typical file, 50 GB over 103k JPEGs ≈ 2 MP). The
seed's path decodes the originals every epoch, as the student project did. The project's path is
what training runs: painting_ml.data.inputs.make_dataset (parallel decode, one resize, uint8 cache,
prefetch) over the training-resolution image cache (painting_ml.data.derived: each painting decoded
once into a 448 px copy; that one-time cost is printed, and also charged to the ratio's first run),
followed by the fused RandomAffine layer the model runs in training — its cost is counted here.
``--project-source originals`` runs the project path on the originals instead (no image cache).
The naive port (same tf.data path, Keras' five stacked augmentation layers) is printed for
reference (once). With ``--rss``, peak RSS of the project's path is measured in fresh
processes on 1× and 4× the images.

The two paths run alternately ``--runs`` times (default 3) in one invocation, so both see the same
machine load; each run's ratio is printed and the median of them last.

    .venv/bin/python bench/input_pipeline.py [--images 400] [--epochs 3] [--runs 3] [--rss]

Prints images/s per path per run and the median ratio last.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import painting_jpegs  # noqa: E402 - imported after the environment and sys.path above are set

SIZE, BATCH = 224, 32


def make_images(folder: Path, n: int, width: int = 512, height: int = 384) -> list[str]:
    """``n`` painting-like ``width``×``height`` JPEGs (reused if already there)."""
    return painting_jpegs(folder / f"{width}x{height}", n, width, height)


def make_cache(paths: list[str], folder: Path) -> tuple[list[str], float]:
    """The image cache's copies of ``paths`` (long side 448, as for 224 px training), made with
    the function and the pool the augment step uses; (paths, seconds it took)."""
    from painting_ml.core.parallel import map_in_chunks
    from painting_ml.core.settings import get_settings
    from painting_ml.data.derived import long_side_for, write_copy

    side = long_side_for(SIZE)
    targets = [folder / f"{Path(p).stem}.jpg" for p in paths]
    t = time.perf_counter()
    jobs = list(zip(paths, targets, strict=True))
    map_in_chunks(lambda st: write_copy(st[0], st[1], side), jobs, get_settings().workers, 8, "image cache")
    return [str(p) for p in targets], time.perf_counter() - t


def run_idg(paths: list[str], epochs: int) -> list[float]:
    """The seed's path: legacy ImageDataGenerator.flow_from_dataframe with its settings."""
    import pandas as pd
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    df = pd.DataFrame({"filename": paths, "class": [str(i % 8) for i in range(len(paths))]})
    gen = ImageDataGenerator(rotation_range=20, width_shift_range=0.2, height_shift_range=0.2,
                             shear_range=0.2, zoom_range=0.2, horizontal_flip=True, rescale=1.0)
    flow = gen.flow_from_dataframe(df, x_col="filename", y_col="class", target_size=(SIZE, SIZE),
                                   batch_size=BATCH, class_mode="categorical", shuffle=True, seed=1)
    rates = []
    for _ in range(epochs):
        t = time.perf_counter()
        n = 0
        for _ in range(len(flow)):
            x, _ = next(flow)
            n += len(x)
        rates.append(n / (time.perf_counter() - t))
    return rates


def run_project(paths: list[str], epochs: int, cache_dir: str, stacked: bool = False,
                cache: str = "memory") -> list[float]:
    """This project's path; with ``stacked`` the augmentation is Keras' five layers instead."""
    import keras
    import tensorflow as tf

    from painting_ml.data.inputs import make_dataset
    from painting_ml.learn.online_augment import RandomAffine, stacked_keras_layers

    ds = make_dataset(paths, [i % 8 for i in range(len(paths))], image_size=SIZE, batch_size=BATCH,
                      shuffle=True, seed=1, cache=cache, cache_dir=cache_dir, shuffle_buffer=256)
    layers = stacked_keras_layers(seed=1) if stacked else [RandomAffine(fill_mode="nearest", seed=1)]
    augment = keras.Sequential(layers)

    @tf.function
    def step(x):
        # What the model's first layers do in a training step: cast the uint8 batch, augment.
        return augment(tf.cast(x, tf.float32), training=True)

    step(tf.zeros((BATCH, SIZE, SIZE, 3), tf.uint8)).numpy()  # trace once, as model.compile would
    rates = []
    for _ in range(epochs):
        t = time.perf_counter()
        n = 0
        for x, _ in ds:
            y = step(x)
            n += int(y.shape[0])
        _ = y.numpy()  # make sure the last batch's work is done
        rates.append(n / (time.perf_counter() - t))
    return rates


def _rss_child(n: int, epochs: int, folder: str) -> None:
    paths = make_images(Path(folder), n)
    with tempfile.TemporaryDirectory() as cache:
        run_project(paths, epochs, cache, cache="disk")
    print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_rss(n: int, epochs: int, folder: Path) -> float:
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(n), "--epochs", str(epochs),
                          "--folder", str(folder)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["maxrss_mb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--source", default="1600x1200", help="size of the generated original paintings (WxH)")
    ap.add_argument("--project-source", default="cache", choices=["cache", "originals"],
                    help="what the project path reads: the image cache (what training does) or the originals")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--cache", default="memory", choices=["memory", "disk"],
                    help="cache of the timed project path (the RSS runs always use disk)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each path (alternating); the median ratio is reported")
    ap.add_argument("--no-stacked", action="store_true", help="skip the naive stacked-layers reference")
    ap.add_argument("--rss", action="store_true", help="also measure peak RSS at 1x and 4x the images (slow)")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        _rss_child(args.rss_child, args.epochs, args.folder)
        return

    work = Path(tempfile.gettempdir()) / "painting_ml_bench_images"
    width, height = (int(v) for v in args.source.lower().split("x"))
    paths = make_images(work, args.images * 4 if args.rss else args.images, width, height)[: args.images]
    print(f"{args.images} JPEGs {width}x{height} -> {SIZE}px batches of {BATCH}, {args.epochs} epochs, "
          f"{os.cpu_count()} CPUs, {args.runs} runs of each path, alternating; project path reads "
          f"{'the image cache' if args.project_source == 'cache' else 'the originals'}", flush=True)
    ours_paths, build_s = paths, 0.0
    if args.project_source == "cache":
        cache_folder = Path(tempfile.mkdtemp(prefix="pm_bench_cache_"))
        ours_paths, build_s = make_cache(paths, cache_folder)
        print(f"image cache built once: {args.images} copies in {build_s:.1f} s "
              f"({args.images / build_s:.0f} img/s; reused by every later epoch, run and dataset version)", flush=True)

    def overall(rates: list[float]) -> float:
        """Images/s over all epochs (the project path's first epoch includes filling the cache)."""
        return args.images * len(rates) / sum(args.images / r for r in rates)

    ratios = []
    for run in range(1, args.runs + 1):
        idg = run_idg(paths, args.epochs)
        with tempfile.TemporaryDirectory() as cache:
            ours = run_project(ours_paths, args.epochs, cache, cache=args.cache)
        ratios.append(overall(ours) / overall(idg))
        if run == 1 and build_s:  # the one-time cache build charged to this run's epochs
            ours_seconds = args.images * len(ours) / overall(ours)
            charged = (args.images * args.epochs / (ours_seconds + build_s)) / overall(idg)
            print(f"run 1 with the cache build charged to its {args.epochs} epochs: ratio {charged:.2f}x", flush=True)
        print(f"run {run}: seed path (ImageDataGenerator.flow_from_dataframe) epochs {[round(r) for r in idg]} img/s, "
              f"all {overall(idg):.0f}; project path (tf.data, {args.cache} cache, + fused RandomAffine) epochs "
              f"{[round(r) for r in ours]} img/s, all {overall(ours):.0f}; ratio {ratios[-1]:.2f}x", flush=True)
    if not args.no_stacked:
        with tempfile.TemporaryDirectory() as cache:
            naive = run_project(ours_paths, args.epochs, cache, stacked=True)
        print(f"naive port (tf.data + 5 stacked Keras layers), once: epochs {[round(r) for r in naive]} img/s",
              flush=True)
    if args.rss:
        rss1 = peak_rss(args.images, 2, work)
        rss4 = peak_rss(args.images * 4, 2, work)
        print(f"peak RSS of the project path (disk cache, 2 epochs): {rss1:.0f} MB at {args.images} images, "
              f"{rss4:.0f} MB at {args.images * 4} images (x{rss4 / rss1:.2f})")
    print(f"RATIO project/seed over all {args.epochs} epochs (cache fill included), per run "
          f"{', '.join(f'{r:.2f}x' for r in ratios)}; median {statistics.median(ratios):.2f}x (target >= 4x)")


if __name__ == "__main__":
    main()
