"""Offline augmentation of a dataset version's train split (flips and right-angle rotations).

The step first makes the version's training-resolution copies (:mod:`painting_ml.data.derived`;
every split, so evaluation reads them too), then transforms the train split's copies. Each
augmented image is content-addressed: its key in the artifact store,
``augmented/by_source/<hash>.jpg``, is the hash of its derived copy's key (the source's bytes and
the working size) and the transform, so the same painting and transform make one file shared by
every dataset version that trains on it (a new version over the same paintings decodes nothing).
Each version records its images in ``augmented_images`` with their source painting, transform and
key; a rerun reuses what exists. Only the train split is ever augmented, so nothing derived from a
validation or test painting can leak into training.
"""

from __future__ import annotations

import hashlib
import math
from typing import TypedDict

from PIL import Image

from painting_ml.core import db
from painting_ml.core.files import write_atomic
from painting_ml.core.parallel import map_in_chunks
from painting_ml.core.settings import get_settings
from painting_ml.core.store import get_store
from painting_ml.core.transforms import parse_angle
from painting_ml.data.versions import DatasetItem, load_items

# PIL transpose ops: geometry is exact (no interpolation). "hvflip" is a flip on both axes.
TRANSFORMS: dict[str, Image.Transpose] = {
    "hflip": Image.Transpose.FLIP_LEFT_RIGHT,
    "vflip": Image.Transpose.FLIP_TOP_BOTTOM,
    "hvflip": Image.Transpose.ROTATE_180,
    "rot90": Image.Transpose.ROTATE_90,     # counter-clockwise, as PIL defines it
    "rot180": Image.Transpose.ROTATE_180,
    "rot270": Image.Transpose.ROTATE_270,
}


def largest_rotated_rect(w: int, h: int, angle_deg: float) -> tuple[int, int]:
    """Size of the largest axis-aligned rectangle inside a ``w``×``h`` rectangle rotated by the angle.

    Cropping to it keeps only painted pixels — no fill corners the CNN could learn from.
    """
    if w <= 0 or h <= 0:
        return 0, 0
    a = math.radians(angle_deg)
    sin_a, cos_a = abs(math.sin(a)), abs(math.cos(a))
    long_side, short_side = (w, h) if w >= h else (h, w)
    if short_side <= 2.0 * sin_a * cos_a * long_side or abs(sin_a - cos_a) < 1e-10:
        x = 0.5 * short_side
        wr, hr = (x / sin_a, x / cos_a) if w >= h else (x / cos_a, x / sin_a)
    else:
        cos_2a = cos_a * cos_a - sin_a * sin_a
        wr, hr = (w * cos_a - h * sin_a) / cos_2a, (h * cos_a - w * sin_a) / cos_2a
    return int(wr), int(hr)


def rotate_crop(img: Image.Image, angle_deg: float) -> Image.Image:
    """Rotate counter-clockwise by any angle about the centre, then crop to painted pixels only."""
    rotated = img.rotate(angle_deg, resample=Image.Resampling.BICUBIC, expand=True)
    cw, ch = largest_rotated_rect(img.width, img.height, angle_deg)
    left, top = (rotated.width - cw) // 2, (rotated.height - ch) // 2
    return rotated.crop((left, top, left + cw, top + ch))


def apply_transform(img: Image.Image, transform: str) -> Image.Image:
    """Return ``img`` (converted to RGB) transformed by ``transform``.

    Flips and right-angle rotations are exact pixel permutations; ``rot<deg>`` for other angles
    (e.g. ``rot45``) rotates with bicubic resampling and crops to the largest inscribed rectangle.
    """
    img = img.convert("RGB")
    if transform in TRANSFORMS:
        return img.transpose(TRANSFORMS[transform])
    angle = parse_angle(transform)
    if angle is None:
        raise ValueError(f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORMS)} or rot<degrees>")
    return rotate_crop(img, angle)


class _AugmentedRow(TypedDict):
    """One ``augmented_images`` row to upsert."""

    id: int
    src: str
    t: str
    path: str


#: Bumped when an augmented file would come out differently, so old files are not reused.
_AUGMENT_RECIPE = b"painting_ml augment v2 jpeg95 from derived"


def augmented_key(derived: str, transform: str) -> str:
    """The store key of ``transform`` applied to the derived copy ``derived`` (one file for all versions)."""
    key = hashlib.sha256(_AUGMENT_RECIPE + b"\x1f" + derived.encode() + b"\x1f" + transform.encode()).hexdigest()[:40]
    return f"augmented/by_source/{key[:2]}/{key}.jpg"


def augment_version(version_id: int, transforms: tuple[str, ...], long_side: int, url: str | None = None,
                    workers: int | None = None) -> int:
    """Make the version's ``long_side`` image copies, then materialise ``transforms`` of every train
    image; return the augmented rows recorded.

    Images are transformed ``workers`` at a time (default ``PAINTING_WORKERS``: every core) in
    threads: PIL releases the GIL while it decodes, transposes, resamples and encodes, which is
    nearly all of the work."""
    from painting_ml.data.derived import derive_items

    _, items = load_items(version_id, url)
    derived = derive_items(items, long_side, url, workers)
    if not transforms:
        return 0
    store = get_store()
    # Decoding and writing images happen outside any transaction: read what exists, work, then
    # record the new files in one short transaction.
    with db.connect(url) as conn:
        existing = db.fetch_dicts(conn, db.sql("augment", "existing"), {"id": version_id})
    in_store = store.presence("augmented/by_source")

    done = {(r["source_filename"], r["transform"]) for r in existing
            if r["source_filename"] in derived and in_store(r["path"])
            and r["path"] == augmented_key(derived[r["source_filename"]], r["transform"])}
    work: list[tuple[DatasetItem, list[str]]] = []
    for item in (i for i in items if i.split == "train"):
        todo = [t for t in transforms if (item.filename, t) not in done]
        if todo:
            work.append((item, todo))

    def augment_one(job: tuple[DatasetItem, list[str]]) -> list[_AugmentedRow]:
        item, todo = job
        source = derived[item.filename]
        dests = {t: augmented_key(source, t) for t in todo}
        missing = [t for t in todo if not in_store(dests[t])]  # made for another version already?
        if missing:
            with Image.open(store.fetch(source)) as opened:
                rgb = opened.convert("RGB")
                for t in missing:
                    target = store.local_path(dests[t])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(apply_transform(rgb, t), target, format="JPEG", quality=95)
                    store.put(dests[t], target)
        return [{"id": version_id, "src": item.filename, "t": t, "path": dests[t]} for t in todo]

    # A few images per task (core.parallel): one future per small image costs more locking.
    workers = workers or get_settings().workers
    rows = [row for rows_of_one in map_in_chunks(augment_one, work, workers, 8, "augment") for row in rows_of_one]
    with db.connect(url) as conn:
        with conn.cursor() as cur:
            cur.executemany(db.sql("augment", "upsert"), rows)
        return int(db.fetch_one(conn, db.sql("augment", "count"), {"id": version_id}, required=True)["n"])


def augmented_train_items(version_id: int, url: str | None = None) -> list[tuple[str, str]]:
    """(local path, source filename) of the version's augmented train images (fetched from the
    store when it is remote)."""
    with db.connect(url) as conn:
        rows = db.fetch_dicts(conn, db.sql("augment", "existing"), {"id": version_id})
    paths = get_store().fetch_many([r["path"] for r in rows])
    return [(str(p), r["source_filename"]) for p, r in zip(paths, rows, strict=True)]
