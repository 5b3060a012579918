"""Run a per-item function over many items in a thread pool, in chunks, keeping the order.

Threads, because the work this project parallelises (decoding and writing images with PIL)
releases the GIL for most of its time. Chunks, because one future per small image costs more
locking than the image's own work and holds memory for every pending result at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from painting_ml.core.progress import progress

T = TypeVar("T")
R = TypeVar("R")


def map_in_chunks(func: Callable[[T], R], items: Sequence[T], workers: int, chunk: int, desc: str) -> list[R]:
    """``[func(x) for x in items]`` on ``workers`` threads (serially for 1), ``chunk`` items per task,
    with a progress bar named ``desc``."""
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    out: list[R] = []

    def run(part: Sequence[T]) -> list[R]:
        return [func(x) for x in part]

    def collect(results: Iterable[list[R]]) -> None:
        for done in progress(results, desc, total=len(chunks), unit=f"x{chunk}"):
            out.extend(done)

    if workers <= 1 or len(chunks) <= 1:
        collect(map(run, chunks))
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            collect(pool.map(run, chunks))
    return out
