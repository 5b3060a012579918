"""The training-resolution image cache: every painting decoded once into a small derived copy.

Training at 224 px from 2400×1800 (or 12000×9000) originals spends nearly all of its input time
decoding pixels it throws away, every epoch, and a GPU worker on another host cannot read the
data folder at all. So each usable painting of a dataset version is decoded once — EXIF
orientation, CMYK/16-bit/alpha handled exactly as ingest does (``images.read_rgb``), JPEGs with
DCT draft scaling — and written as a JPEG whose long side is at most ``long_side`` (2× the run's
image size: room for the crop and the online zoom) to the artifact store under
``derived/<long_side>/<sha256[:2]>/<sha256 of the source bytes>.jpg``.

The key is the source's content hash and the size, so the same painting makes one file for every
dataset version, run and host; ``image_cache`` remembers each source file's hash with its size and
mtime, so an unchanged file is never read again. Training, evaluation and offline augmentation
read these copies, never the originals.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

from painting_ml.core import db
from painting_ml.core.artifacts import file_sha256
from painting_ml.core.errors import DataError
from painting_ml.core.files import write_atomic
from painting_ml.core.parallel import map_in_chunks
from painting_ml.core.settings import get_settings
from painting_ml.core.store import get_store
from painting_ml.data.images import read_rgb
from painting_ml.data.versions import DatasetItem

log = logging.getLogger(__name__)

#: The encoding of a derived copy; changing how copies are made must change this folder name.
RECIPE = "v1"
QUALITY = 90


class _CacheRow(TypedDict):
    """One ``image_cache`` row to upsert: a source file, its size and mtime, and its copy's key."""

    root: str | None
    rel: str | None
    size: int
    mtime: int
    sha: str
    side: int
    key: str


def long_side_for(image_size: int) -> int:
    """The working size of the copies a run of ``image_size`` px reads: 2× (crop and zoom room)."""
    return 2 * int(image_size)


def derived_key(sha: str, long_side: int) -> str:
    return f"derived/{RECIPE}-{long_side}/{sha[:2]}/{sha}.jpg"


def write_copy(source: str | Path, target: Path, long_side: int) -> None:
    """Decode ``source`` as ingest does and write its working-size JPEG to ``target`` (atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(read_rgb(source, long_side), target, format="JPEG", quality=QUALITY)


def derive_items(items: Sequence[DatasetItem], long_side: int, url: str | None = None,
                 workers: int | None = None) -> dict[str, str]:
    """Make sure every item has its derived copy in the store; ``{filename: key}``.

    Reads only files that are new or changed since their copy was made (size or mtime differ),
    hashes them, and decodes only those whose copy is not in the store yet (another version or
    host may have made it). Runs ``workers`` at a time (default ``PAINTING_WORKERS``): PIL releases
    the GIL while decoding, resampling and encoding.
    """
    store = get_store()
    roots = sorted({i.data_root for i in items if i.data_root})
    with db.connect(url) as conn:
        known = {(r["data_root"], r["rel_path"]): r
                 for r in db.fetch_dicts(conn, db.sql("derived", "known"), {"side": long_side, "roots": roots})}
    in_store = store.presence(f"derived/{RECIPE}-{long_side}")

    def one(item: DatasetItem) -> _CacheRow | None:
        try:
            st = os.stat(item.path)
        except FileNotFoundError:
            raise DataError(f"{item.path} (painting {item.filename} of this dataset version) is gone since the "
                            "last ingest; rerun the ingest (painting_ingest or `painting-ml ingest`) so the catalog "
                            "marks it gone, then retrain") from None
        row = known.get((item.data_root, item.rel_path))
        if row and row["size_bytes"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns and in_store(row["key"]):
            return None
        sha = file_sha256(item.path)[1]
        key = derived_key(sha, long_side)
        if not in_store(key):
            target = store.local_path(key)
            write_copy(item.path, target, long_side)
            store.put(key, target)
        return {"root": item.data_root, "rel": item.rel_path, "size": st.st_size, "mtime": st.st_mtime_ns,
                "sha": sha, "side": long_side, "key": key}

    todo = [i for i in items if not i.gone]
    rows = [r for r in map_in_chunks(one, todo, workers or get_settings().workers, 8, "image cache") if r]
    if rows:
        with db.connect(url) as conn, conn.cursor() as cur:
            cur.executemany(db.sql("derived", "upsert"), rows)
    log.info("image cache at %d px: %d of %d paintings (re)made", long_side, len(rows), len(todo))
    by_path = {path: row["key"] for path, row in known.items()} | {(r["root"], r["rel"]): r["key"] for r in rows}
    return _keys_of(items, by_path)


def cached_keys(items: Sequence[DatasetItem], long_side: int, url: str | None = None) -> dict[str, str]:
    """``{filename: key}`` of the items' derived copies (the items without one are left out)."""
    with db.connect(url) as conn:
        rows = db.fetch_dicts(conn, db.sql("derived", "known"), {
            "side": long_side, "roots": sorted({i.data_root for i in items if i.data_root})})
    return _keys_of(items, {(r["data_root"], r["rel_path"]): r["key"] for r in rows})


def _keys_of(items: Sequence[DatasetItem], by_path: dict[tuple[str | None, str | None], str]) -> dict[str, str]:
    return {i.filename: by_path[(i.data_root, i.rel_path)] for i in items if (i.data_root, i.rel_path) in by_path}


def cached_paths(items: Sequence[DatasetItem], long_side: int, url: str | None = None) -> list[str]:
    """Local paths of the items' derived copies, in order (downloaded once per host from a remote
    store).

    Raises:
        DataError: some items have no copy yet (one line: which step makes them).
    """
    keys = cached_keys(items, long_side, url)
    missing = [i.filename for i in items if i.filename not in keys]
    if missing:
        raise DataError(f"{len(missing)} painting(s) (e.g. {missing[0]}) have no {long_side} px copy in the image "
                        "cache; run the augment step (painting_retrain's `augment` task, or `painting-ml train`), "
                        "which makes them")
    return [str(p) for p in get_store().fetch_many([keys[i.filename] for i in items])]
