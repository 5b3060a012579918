"""Progress bars for long work (synth, ingest, augment, mosaics), on stderr.

Shown when stderr is a terminal, or when ``PAINTING_PROGRESS=1``; ``PAINTING_PROGRESS=0`` turns
them off. Airflow task logs and tests get none, so logs stay readable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from painting_ml.core.settings import get_settings

T = TypeVar("T")


def enabled() -> bool:
    flag = get_settings().progress
    return sys.stderr.isatty() if flag is None else flag


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Iterate ``items`` with a progress bar named ``desc`` (no-op when disabled)."""
    if not enabled():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)
