"""Scale benchmark: a Painter-by-Numbers-shaped folder, ingested and used the way the DAGs do.

Generates (once; reused by later runs with the same arguments) a folder in the Kaggle layout with
``--rows`` CSV rows over ``--artists`` artists whose painting counts follow PbN's long tail (a
Zipf-like curve: a few artists with ~500 paintings, the median ~25 at 100k rows), spread over
``train_1``…``train_9`` and ``test``. Images are small distinct JPEGs by default; ``--realistic``
writes painting-like 1600×1200 JPEGs (slow to generate: use a few thousand rows).

Then prints, in one run, each step in its own child process (so each peak RSS is its own):

* first ingest (every image decoded): rows/s;
* unchanged re-ingest (the fingerprint check: nothing decoded);
* one file changed (one image replaced): the incremental path decodes one image;
* ``--full`` re-ingest at 1 and 2 (``--workers``) probe workers: the pool's speed-up;
* selection + split of a dataset version;
* the augment step at 1 and 2 workers: the training-resolution image cache (every painting of the
  version decoded once to a 448 px copy) plus the train split's offline transforms (hflip, rot90),
  into a fresh artifact store each time: images/s;
* input epochs at 224 px (``--epoch-images`` paintings of the version, batch 32, the real tf.data path):
  cold from the originals, cold from the image cache (the ratio has a target) and warm (the
  second epoch, from the decoded-image disk cache training uses by default), each with its peak RSS;
* how many cores 2 busy processes really get (a shared machine gives fewer): the ceiling of
  both speed-ups. The 1-vs-2 comparisons alternate and repeat (``--repeats``, median).

    .venv/bin/python bench/scale.py                     # 100,000 rows, small images
    .venv/bin/python bench/scale.py --rows 3000 --realistic

Targets at 100k rows on 2 cores: first ingest <= 60 s, unchanged <= 3 s, one file changed <= 5 s;
a cold input epoch from the cache >= 4x the same epoch from the originals (``--realistic``: with
32 px originals there is nothing for the cache to save).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import machine, scratch_database

HERE = Path(__file__).resolve()


def long_tail(rows: int, artists: int, top: int = 500) -> list[int]:
    """Paintings per artist, largest first, summing to ``rows``: Zipf-like (count ∝ rank^-1),
    capped at ``top``, at least 1 each — PbN's shape (2,319 artists; the largest ~500). At 100k
    rows over 2,300 artists: 142 artists with >= 100, median 25, smallest 19."""
    weights = [1.0 / (r + 1) for r in range(artists)]
    scale = rows / sum(weights)
    counts = [max(1, min(top, round(w * scale))) for w in weights]
    i = 0
    while sum(counts) != rows:  # spread the rounding (and the cap's overflow) over the tail
        k = i % artists
        if sum(counts) < rows and counts[k] < top:
            counts[k] += 1
        elif sum(counts) > rows and counts[-1 - k] > 1:
            counts[-1 - k] -= 1
        i += 1
        if i > 50 * artists * max(1, rows // artists):
            raise SystemExit(f"cannot spread {rows} rows over {artists} artists with at most {top} each")
    return counts


def generate(out: Path, rows: int, artists: int, realistic: bool, seed: int = 0) -> Path:
    """Write the folder (skipped when ``out/.complete`` says it holds these arguments)."""
    import csv
    import io

    import numpy as np
    from PIL import Image

    from painting_ml.core.files import write_atomic
    from painting_ml.data.synth import ALL_DATA_COLUMNS, GENRES, STYLES, artist_names, make_styles, paint

    stamp = f"rows={rows} artists={artists} realistic={realistic} seed={seed}"
    if (out / ".complete").is_file() and (out / ".complete").read_text() == stamp:
        return out
    counts = long_tail(rows, artists)
    names = artist_names(artists)
    rng = np.random.default_rng(seed)
    styles = make_styles(8, rng) if realistic else None
    folders = [f"train_{i}" for i in range(1, 10)] + ["test"]
    for f in folders:
        (out / f).mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with open(out / "all_data_info.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(ALL_DATA_COLUMNS)
        n = 0
        for a, count in enumerate(counts):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            for _ in range(count):
                n += 1
                name = f"{n}.jpg"
                folder = folders[n % len(folders)]
                if realistic:
                    if not (out / folder / name).is_file():  # resumable: an interrupted run's images are kept
                        img = paint(styles[a % 8], GENRES[n % 4], 1600, 1200, np.random.default_rng([seed, n]))
                        write_atomic(img, out / folder / name, format="JPEG", quality=90)
                    wh = (1600, 1200)
                else:
                    # 32 px of per-painting noise over the artist's colour: distinct bytes, cheap to write.
                    noise = rng.integers(-40, 40, (8, 8, 3))
                    arr = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                    buf = io.BytesIO()
                    Image.fromarray(arr).resize((32, 24), Image.NEAREST).save(buf, format="JPEG", quality=80)
                    (out / folder / name).write_bytes(buf.getvalue())
                    wh = (32, 24)
                w.writerow([names[a], str(1800 + n % 200), GENRES[n % 4], wh[0], wh[1], "", "wikiart",
                            STYLES[a % len(STYLES)], f"Painting {n}",
                            "test_only" if folder == "test" else "train_and_test", str(folder != "test"), name])
    (out / ".complete").write_text(stamp)
    print(f"generated {rows} rows over {artists} artists in {time.perf_counter() - t:.1f} s -> {out}", flush=True)
    return out


# --- Steps, each run in a child process -----------------------------------------------------------

def _step(name: str, data: Path, url: str, workers: int) -> dict:
    from painting_ml.core.settings import reload_settings

    os.environ["PAINTING_WORKERS"] = str(workers)
    reload_settings()
    from painting_ml.data import ingest as catalog

    t = time.perf_counter()
    if name == "ingest":
        out = catalog.ingest_if_changed(data, url)
    elif name == "full":
        out = catalog.ingest_if_changed(data, url, full=True)
    elif name.startswith("select_split"):
        from painting_ml.core.config import RunConfig
        from painting_ml.data.selection import select_artists
        from painting_ml.data.versions import create_dataset_version

        cfg = RunConfig(data_dir=str(data), n_artists=int(name.split(":")[1]), seed=1)
        out = {"version": create_dataset_version(cfg, select_artists(cfg, url), url)}
    elif name.startswith("augment"):
        import shutil
        import tempfile

        from painting_ml.data.augment import augment_version
        from painting_ml.data.versions import load_items

        version = int(name.split(":")[1])
        items = load_items(version, url)[1]
        n_train = sum(1 for i in items if i.split == "train")
        tmp = Path(tempfile.mkdtemp(prefix="pm_scale_aug_"))  # a fresh, empty artifact store
        os.environ["PAINTING_ARTIFACTS_URL"] = tmp.as_uri()
        reload_settings()
        try:
            t = time.perf_counter()
            out = {"images": augment_version(version, ("hflip", "rot90"), LONG_SIDE, url, workers=workers),
                   "sources": n_train, "cached": len(items)}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    elif name.startswith("input"):
        out = _input_epoch(name, url, workers)
    else:
        raise SystemExit(f"unknown step {name!r}")
    seconds = out["epoch_seconds"] if name.startswith("input") else time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step": name, "seconds": seconds, "rss_mb": rss_mb, "out": out}


LONG_SIDE = 448  # the image cache's working size for 224 px training (2x)


def _input_epoch(name: str, url: str, workers: int) -> dict:
    """``input:<version>:<n>:<source>``: one epoch of the training input path over ``n`` train
    paintings of the version at 224 px; source ``originals`` or ``cache`` (cold, no decoded-image cache) or
    ``warm`` (the second epoch over the disk cache of decoded 224 px images)."""
    import shutil
    import tempfile

    from painting_ml.data.derived import cached_paths, derive_items
    from painting_ml.data.inputs import make_dataset
    from painting_ml.data.versions import load_items

    _, version, n, source = name.split(":")
    os.environ["PAINTING_ARTIFACTS_URL"] = (Path(tempfile.gettempdir()) / f"pm_scale_store_v{version}").as_uri()
    from painting_ml.core.settings import reload_settings

    reload_settings()
    items = load_items(int(version), url)[1][:int(n)]  # every split is in the cache
    if source == "originals":
        paths = [i.path for i in items]
    else:
        derive_items(items, LONG_SIDE, url, workers)  # made once (the augment step's work), not timed
        paths = cached_paths(items, LONG_SIDE, url)
    tmp = Path(tempfile.mkdtemp(prefix="pm_scale_cache_"))
    try:
        ds = make_dataset(paths, [i.label for i in items], image_size=224, batch_size=32, shuffle=True, seed=0,
                          cache="disk" if source == "warm" else "none", cache_dir=tmp)
        epochs = 2 if source == "warm" else 1
        for _ in range(epochs):
            t = time.perf_counter()
            images = sum(int(x.shape[0]) for x, _ in ds)
            seconds = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"images": images, "epoch_seconds": seconds, "img_s": images / seconds}


def run_step(name: str, data: Path, url: str, workers: int, in_process: bool = False) -> dict:
    """Run one step in a fresh interpreter (or in this one: faster, but peak RSS is then the
    process's so far); its JSON result (seconds, peak RSS, summary)."""
    if in_process:
        return json.loads(json.dumps(_step(name, data, url, workers), default=str))
    proc = subprocess.run([sys.executable, str(HERE), "--step", name, "--data", str(data), "--url", url,
                           "--workers", str(workers)], capture_output=True, text=True,
                          env={**os.environ, "PAINTING_PROGRESS": "0"})
    if proc.returncode != 0:
        raise SystemExit(f"step {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _burn(n: int) -> int:
    s = 0
    for i in range(n):
        s += i
    return s


def effective_cores(workers: int, n: int = 10_000_000) -> float:
    """How many cores ``workers`` busy processes really get (a shared machine gives fewer than it
    has): the ceiling of any pool speed-up measured in this run."""
    from concurrent.futures import ProcessPoolExecutor

    t = time.perf_counter()
    _burn(n)
    one = time.perf_counter() - t
    with ProcessPoolExecutor(workers) as pool:
        t = time.perf_counter()
        list(pool.map(_burn, [n] * workers))
        many = time.perf_counter() - t
    return workers * one / many


def change_one_file(data: Path) -> str:
    """Replace one image with new pixels (a later mtime too): the one file the next ingest decodes."""
    from PIL import Image

    victim = next((data / "train_1").iterdir())
    with Image.open(victim) as im:
        size = im.size
    Image.new("RGB", size, (int(time.time()) % 256, 17, 99)).save(victim, format="JPEG")
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    return victim.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--artists", type=int, default=2_300)
    ap.add_argument("--realistic", action="store_true", help="1600x1200 painting-like JPEGs (slow to generate)")
    ap.add_argument("--out", type=Path, help="where the folder is generated (default: /tmp/pm_scale_<rows>[_r])")
    ap.add_argument("--workers", type=int, default=2, help="the pool size compared with 1")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each 1-vs-N worker comparison (median)")
    ap.add_argument("--epoch-images", type=int, default=512, help="paintings per timed input epoch")
    ap.add_argument("--in-process", action="store_true",
                    help="run the steps in this process (a quick check; peak RSS is then cumulative)")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        print(json.dumps(_step(args.step, args.data, args.url, args.workers), default=str))
        return

    out = args.out or Path(f"/tmp/pm_scale_{args.rows}{'_r' if args.realistic else ''}")
    data = generate(out, args.rows, args.artists, args.realistic)
    rows = args.rows
    print(f"{rows:,} rows over {args.artists:,} artists ({'1600x1200' if args.realistic else '32x24'} JPEGs); "
          f"{machine()}; pool {args.workers} workers; {args.workers} busy processes get "
          f"{effective_cores(args.workers):.2f} cores now", flush=True)

    def show(label: str, r: dict, extra: str = "") -> None:
        print(f"{label:<34} {r['seconds']:8.2f} s  peak RSS {r['rss_mb']:6.0f} MB  {extra}", flush=True)

    with scratch_database() as url:
        first = run_step("ingest", data, url, args.workers, args.in_process)
        show("first ingest", first, f"{rows / first['seconds']:,.0f} rows/s, {first['out']['probed']:,} decoded")
        same = run_step("ingest", data, url, args.workers, args.in_process)
        show("unchanged re-ingest", same, "skipped (fingerprint)" if same["out"] is None else "NOT skipped")
        change_one_file(data)
        one = run_step("ingest", data, url, args.workers, args.in_process)
        show("one file changed", one, f"{one['out']['probed']} decoded, {one['out']['changed_rows']} CSV rows changed, "
             f"{one['out']['loaded']:,} usable")
        # Alternated and repeated (median): a shared machine's free cores change from minute to minute.
        runs: dict[int, list[dict]] = {1: [], args.workers: []}
        for _ in range(args.repeats):
            for w in runs:
                runs[w].append(run_step("full", data, url, w, args.in_process))
        full = {w: sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2] for w, rs in runs.items()}
        for w, r in full.items():
            show(f"--full re-ingest, {w} worker(s)", r, f"{rows / r['seconds']:,.0f} rows/s "
                 f"(median of {args.repeats})")
        n_artists = min(50, args.artists // 4)
        sel = run_step(f"select_split:{n_artists}", data, url, args.workers, args.in_process)
        show(f"selection + split ({n_artists} artists)", sel, f"version {sel['out']['version']}")
        runs = {1: [], args.workers: []}
        for _ in range(args.repeats):
            for w in runs:
                runs[w].append(run_step(f"augment:{sel['out']['version']}", data, url, w, args.in_process))
        aug = {w: sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2] for w, rs in runs.items()}
        for w, r in aug.items():
            show(f"augment step, {w} worker(s)", r, f"{(r['out']['images'] + r['out']['cached']) / r['seconds']:,.0f} "
                 f"img/s written ({r['out']['cached']:,} cache copies + {r['out']['sources']:,} train x 2, "
                 f"median of {args.repeats})")
        epochs = {}
        for source in ("originals", "cache", "warm"):
            got = [run_step(f"input:{sel['out']['version']}:{args.epoch_images}:{source}", data, url, args.workers,
                            args.in_process) for _ in range(args.repeats)]
            epochs[source] = sorted(got, key=lambda r: r["seconds"])[len(got) // 2]
            r = epochs[source]
            show(f"input epoch 224 px, {source}", r, f"{r['out']['img_s']:,.0f} img/s over {r['out']['images']} "
                 f"paintings (median of {args.repeats})")
    print(f"(ceiling: {effective_cores(args.workers):.2f} cores for {args.workers} busy processes now)")
    thumbs = "" if args.realistic else (" (thumbnails: ingest probes them on one thread whatever the pool size, "
                                        "see THREADS_FROM_BYTES)")
    ingest_ratio = full[1]["seconds"] / full[args.workers]["seconds"]
    print(f"RATIO ingest pool {args.workers}/1 workers: {ingest_ratio:.2f}x{thumbs}; "
          f"augmentation pool {args.workers}/1: {aug[1]['seconds'] / aug[args.workers]['seconds']:.2f}x")
    cold = epochs["originals"]["seconds"] / epochs["cache"]["seconds"]
    print(f"RATIO input epoch cold from the image cache / from the originals: {cold:.2f}x (target >= 4 with "
          f"large originals); warm / originals: {epochs['originals']['seconds'] / epochs['warm']['seconds']:.2f}x")
    print(f"TARGETS (at 100k rows, 2 cores; this run {rows:,} rows): first ingest {first['seconds']:.1f} s (<= 60), "
          f"unchanged {same['seconds']:.1f} s (<= 3), one file changed {one['seconds']:.1f} s (<= 5)")


if __name__ == "__main__":
    main()
