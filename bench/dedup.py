"""Duplicate benchmark: are copies of one picture found, and does the search scale?

1. A generated catalog of distinct paintings (painting_ml.data.synth's painter) with copies of some
   of them, one kind each: ``exact`` (same bytes), ``jpeg`` (re-encoded at quality 50–95),
   ``resize`` (0.5–2×), ``crop`` (up to 10 % off the sides), ``jitter`` (brightness, contrast and
   colour ±10 %) and ``grey``. Every file goes through the ingest's probe (decode, sha256, pHash);
   the pairs come from painting_ml.data.identity.near_pairs. Per kind and per threshold: recall
   (copies grouped with their original) and the precision of all pairs found (a pair of two
   distinct paintings is a false one).
2. The search at scale: 100,000 uniformly random 64-bit hashes (distinct paintings) plus copies whose
   bit flips follow the distances measured in step 1, searched all against all, then 1,000 new
   ones against the rest (an incremental ingest).

    .venv/bin/python bench/dedup.py [--paintings 1000] [--copies 300] [--scale 100000]

Targets: recall >= 0.95 and precision >= 0.99 at the chosen threshold on the kinds claimed; the
search at 100,000 paintings in <= 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine
from PIL import Image, ImageEnhance

KINDS = ("exact", "jpeg", "resize", "crop", "jitter", "grey")


def make_copy(kind: str, src: Path, dest: Path, rng: np.random.Generator) -> None:
    """Write a ``kind`` copy of ``src`` to ``dest``."""
    if kind == "exact":
        dest.write_bytes(src.read_bytes())
        return
    with Image.open(src) as im:
        img = im.convert("RGB")
    quality = 90
    if kind == "jpeg":
        quality = int(rng.integers(50, 96))
    elif kind == "resize":
        f = float(rng.uniform(0.5, 2.0))
        img = img.resize((max(8, round(img.width * f)), max(8, round(img.height * f))), Image.Resampling.LANCZOS)
    elif kind == "crop":
        w, h = img.size
        cut = [int(rng.uniform(0, 0.05) * s) for s in (w, w, h, h)]  # <= 10 % of each side in all
        img = img.crop((cut[0], cut[2], w - cut[1], h - cut[3]))
    elif kind == "jitter":
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            img = enhancer(img).enhance(float(rng.uniform(0.9, 1.1)))
    elif kind == "grey":
        img = img.convert("L")
    img.save(dest, format="JPEG", quality=quality)


def real_catalog(n: int, copies: int, size: int, seed: int) -> tuple[np.ndarray, list[str], dict[int, str]]:
    """Hashes of ``n`` distinct generated paintings plus ``copies`` copies (kinds in turn), each
    probed as the ingest does; returns the hashes, the sha256s and ``{copy index: kind}``, where
    copy ``n + k`` is a copy of painting ``k % n``."""
    from painting_ml.data.images import probe_image
    from painting_ml.data.synth import GENRES, make_styles, paint

    rng = np.random.default_rng(seed)
    styles = make_styles(max(2, n // 40), rng)
    hashes: list[int] = []
    shas: list[str] = []
    kind_of: dict[int, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = []
        for k in range(n):
            img_rng = np.random.default_rng([seed, k])
            ratio = img_rng.uniform(0.75, 1.333)
            w, h = (size, int(size / ratio)) if ratio >= 1 else (int(size * ratio), size)
            img = paint(styles[k % len(styles)], GENRES[k % len(GENRES)], w, h, img_rng)
            path = folder / f"{k}.jpg"
            img.save(path, format="JPEG", quality=90)
            paths.append(path)
        for c in range(copies):
            kind = KINDS[c % len(KINDS)]
            path = folder / f"copy{c}.jpg"
            make_copy(kind, paths[c % n], path, rng)
            paths.append(path)
            kind_of[n + c] = kind
        for path in paths:
            probe = probe_image(path, identity=True)
            assert probe.phash is not None, probe
            hashes.append(probe.phash)
            shas.append(probe.sha256)
    return np.asarray(hashes, dtype=np.int64), shas, kind_of


def score(hashes: np.ndarray, n: int, kind_of: dict[int, str], threshold: int) -> dict[str, float]:
    """Recall per kind (a copy grouped with its original) and the precision of all pairs."""
    from painting_ml.data.identity import group_labels, near_pairs

    i, j, _ = near_pairs(hashes, threshold)
    labels = group_labels(len(hashes), i, j)
    out: dict[str, float] = {}
    for kind in KINDS:
        members = [c for c, k in kind_of.items() if k == kind]
        out[kind] = sum(labels[c] == labels[(c - n) % n] for c in members) / max(1, len(members))
    truth = np.asarray([(a if a < n else (a - n) % n) == (b if b < n else (b - n) % n)
                        for a, b in zip(i.tolist(), j.tolist(), strict=True)], dtype=bool)
    out["precision"] = float(truth.mean()) if len(truth) else 1.0
    out["false_pairs"] = float((~truth).sum())
    return out


def scale_search(real: np.ndarray, n: int, kind_of: dict[int, str], scale: int, threshold: int,
                 seed: int) -> dict[str, float]:
    """Time the search on ``scale`` random hashes plus copies flipped like the measured ones."""
    from painting_ml.data.identity import hamming, near_pairs

    rng = np.random.default_rng(seed)
    measured = [int(hamming(real[c:c + 1], real[(c - n) % n:(c - n) % n + 1])[0]) for c in kind_of]
    n_copies = scale // 50
    distinct = rng.integers(-2**63, 2**63 - 1, size=scale, dtype=np.int64)
    src = rng.integers(0, scale, size=n_copies)
    copies = distinct[src].view(np.uint64).copy()
    flips = rng.choice(measured, size=n_copies)
    for k in range(n_copies):
        for b in rng.choice(64, size=int(flips[k]), replace=False):
            copies[k] ^= np.uint64(1) << np.uint64(int(b))
    hashes = np.concatenate([distinct, copies.view(np.int64)])
    start = time.perf_counter()
    i, j, _ = near_pairs(hashes, threshold)
    full = time.perf_counter() - start
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    within = [k for k in range(n_copies) if flips[k] <= threshold]
    recall = sum((int(src[k]), scale + k) in found for k in within) / max(1, len(within))
    start = time.perf_counter()
    near_pairs(hashes, threshold, np.arange(len(hashes) - 1000, len(hashes)))
    incremental = time.perf_counter() - start
    return {"paintings": len(hashes), "full_s": full, "incremental_1000_s": incremental, "pairs": len(found),
            "recall_within_threshold": recall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paintings", type=int, default=1000)
    p.add_argument("--copies", type=int, default=300)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--scale", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from painting_ml.data.identity import NEAR_DISTANCE, hamming

    print(f"# dedup benchmark · {machine()}")
    start = time.perf_counter()
    hashes, _, kind_of = real_catalog(args.paintings, args.copies, args.size, args.seed)
    n = args.paintings
    print(f"{n} distinct paintings + {args.copies} copies probed and hashed in {time.perf_counter() - start:.1f} s")
    for kind in KINDS:
        d = [int(hamming(hashes[c:c + 1], hashes[(c - n) % n:(c - n) % n + 1])[0])
             for c, k in kind_of.items() if k == kind]
        print(f"  {kind:7s} distance to original: median {np.median(d):.0f}, p95 {np.percentile(d, 95):.0f}, "
              f"max {max(d)}")
    i_, j_ = np.triu_indices(n, 1)
    nearest = hamming(hashes[i_], hashes[j_])
    print(f"  distinct pairs: smallest distance {nearest.min()}, 0.1th percentile {np.percentile(nearest, 0.1):.0f}")
    print("threshold  " + "  ".join(f"{k:>6s}" for k in KINDS) + "  precision  false pairs")
    for t in range(4, 17, 2):
        s = score(hashes, n, kind_of, t)
        mark = "  <- NEAR_DISTANCE" if t == NEAR_DISTANCE else ""
        print(f"{t:9d}  " + "  ".join(f"{s[k]:6.3f}" for k in KINDS)
              + f"  {s['precision']:9.4f}  {int(s['false_pairs']):11d}{mark}")
    if args.scale:
        r = scale_search(hashes, n, kind_of, args.scale, NEAR_DISTANCE, args.seed)
        print(f"search at {r['paintings']:,} hashes (threshold {NEAR_DISTANCE}): all pairs {r['full_s']:.1f} s, "
              f"1,000 new against all {r['incremental_1000_s']:.2f} s; {r['pairs']} pairs; recall of copies within "
              f"the threshold {r['recall_within_threshold']:.3f}")


if __name__ == "__main__":
    main()
