"""Memory of a training epoch: peak RSS at 128 px on 1,000 and on 8,000 generated images, each in
a fresh process, through the real input path with the disk cache (the setting for sets that do not
fit in memory). Target: flat (the larger set within 15 % of the smaller) and <= 3 GB.

    .venv/bin/python bench/memory.py                    # small CNN: the same input path and fit loop
    .venv/bin/python bench/memory.py --model resnet50   # the production model (~9 min on 2 CPUs)

On 2 CPU cores ResNet50 trains at ~17 img/s at 128 px, so an epoch over 8,000 images takes ~8
minutes; the default uses a small CNN so the benchmark stays under 5 minutes. The model's memory is
constant either way; what scales with the set is the input path, which is identical.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import painting_jpegs  # noqa: E402 - imported after the environment and sys.path above are set

SIZE = 128


def make_images(folder: Path, n: int) -> list[str]:
    return painting_jpegs(folder, n, 192, 160, style_seed=0, image_seed=1)


def child(n: int, model_name: str, folder: str) -> None:
    import keras

    from painting_ml.core.config import RunConfig
    from painting_ml.data.inputs import make_dataset
    from painting_ml.learn.models import compile_model, create_model

    paths = make_images(Path(folder), n)
    labels = [i % 8 for i in range(n)]
    with tempfile.TemporaryDirectory() as cache:
        ds = make_dataset(paths, labels, image_size=SIZE, batch_size=32, shuffle=True, seed=0,
                          cache="disk", cache_dir=cache, shuffle_buffer=256)
        if model_name == "resnet50":
            cfg = RunConfig(data_dir="-", image_size=SIZE, weights=None, fine_tune="all", gradient_accumulation_steps=1)
            model = create_model(cfg, 8)
            compile_model(model, cfg)
        else:
            model = keras.Sequential([
                keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 255.0),
                keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
                keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
                keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(8, activation="softmax"),
            ])
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(ds, epochs=1, verbose=0)
    print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["small", "resnet50"], default="small")
    ap.add_argument("--sizes", default="1000,8000")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.model, args.folder)
        return
    folder = Path(tempfile.gettempdir()) / "painting_ml_bench_mem"
    sizes = [int(s) for s in args.sizes.split(",")]
    make_images(folder, max(sizes))
    rss = {}
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--model", args.model, "--folder",
                              str(folder)], capture_output=True, text=True, check=True)
        rss[n] = json.loads(out.stdout.strip().splitlines()[-1])["maxrss_mb"]
        print(f"{n:6d} images at {SIZE}px, one training epoch ({args.model} model): peak RSS {rss[n]:.0f} MB",
              flush=True)
    small, large = rss[sizes[0]], rss[sizes[-1]]
    print(f"RATIO peak RSS {sizes[-1]} / {sizes[0]} images: {large / small:.2f} (target <= 1.15; "
          f"largest {max(rss.values()) / 1024:.2f} GB, target <= 3 GB)")


if __name__ == "__main__":
    main()
