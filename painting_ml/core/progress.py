"""Progress bars for long work (synth, ingest, augment, mosaics), on stderr.

Shown when stderr is a terminal, or when ``PAINTING_PROGRESS=1``; ``PAINTING_PROGRESS=0`` turns
them off. Airflow task logs and tests get none, so logs stay readable.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def enabled() -> bool:
    flag = os.environ.get("PAINTING_PROGRESS", "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    return sys.stderr.isatty()


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Iterate ``items`` with a progress bar named ``desc`` (no-op when disabled)."""
    if not enabled():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)
