"""Atomic file writes: write beside the target under a temp name, then rename over it, so a crash
or a kill never leaves a half-written file (and a failed write leaves no temp file behind)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it over ``path`` when the block succeeds, remove
    it when it fails. ``suffix`` keeps an extension writers infer the format from (``.png``,
    ``.keras``, ``.weights.h5``)."""
    path = Path(path)
    # Process and thread in the name: two threads of one process may write the same target at once
    # (exact copies of a painting share their image-cache key); each renames its own complete file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(img: Image.Image, path: Path, **save_kwargs: Any) -> None:
    """Save a PIL image atomically (``save_kwargs`` go to ``Image.save``; give ``format``)."""
    with atomic_path(path) as tmp:
        img.save(tmp, **save_kwargs)
