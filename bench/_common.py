"""Helpers shared by the benchmarks: a throw-away database and timing."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@contextlib.contextmanager
def scratch_database():
    """Create a database on the PAINTING_DB_URL server (or the embedded one), point
    ``PAINTING_DB_URL`` (and the settings) at it for the block, then restore both and drop it."""
    from painting_ml.core import db
    from painting_ml.core.settings import get_settings, reload_settings

    base = db.resolve_url(get_settings())
    url = db.create_database(base, "pm_bench")
    before = os.environ.get("PAINTING_DB_URL")
    try:
        db.migrate(url)
        os.environ["PAINTING_DB_URL"] = url
        reload_settings()
        yield url
    finally:
        if before is None:
            os.environ.pop("PAINTING_DB_URL", None)
        else:
            os.environ["PAINTING_DB_URL"] = before
        reload_settings()
        db.drop_database(base, url)


def painting_jpegs(folder: Path, n: int, width: int, height: int, style_seed: int = 0,
                   image_seed: int = 0) -> list[str]:
    """``n`` painting-like ``width``×``height`` JPEGs by 8 synthetic artists in ``folder``
    (files already there are reused, so repeated runs skip the painting)."""
    import numpy as np

    from painting_ml.data.synth import GENRES, make_styles, paint

    folder.mkdir(parents=True, exist_ok=True)
    styles = make_styles(8, np.random.default_rng(style_seed))
    paths = []
    for i in range(n):
        p = folder / f"{i}.jpg"
        if not p.exists():
            img = paint(styles[i % 8], GENRES[i % 4], width, height, np.random.default_rng([image_seed, i]))
            img.save(p, quality=90)
        paths.append(str(p))
    return paths


def timed(fn, repeats: int = 3) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine() -> str:
    return f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}"
