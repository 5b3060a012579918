import numpy as np
import psycopg
import pytest
from PIL import Image

from painting_ml.core.config import RunConfig
from painting_ml.data import ingest as catalog
from painting_ml.data.augment import apply_transform, augment_version
from painting_ml.data.selection import select_artists
from painting_ml.data.versions import create_dataset_version, load_items

pytestmark = pytest.mark.db


@pytest.fixture
def marked():
    """A 3x2 (w x h) image with a unique value per pixel, so geometry can be checked exactly."""
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40
    return Image.fromarray(np.stack([arr] * 3, -1), "RGB"), arr


@pytest.mark.parametrize("name,expect", [
    ("hflip", lambda a: a[:, ::-1]),
    ("vflip", lambda a: a[::-1, :]),
    ("hvflip", lambda a: a[::-1, ::-1]),
    ("rot90", lambda a: np.rot90(a, 1)),      # counter-clockwise
    ("rot180", lambda a: np.rot90(a, 2)),
    ("rot270", lambda a: np.rot90(a, 3)),
])
def test_transform_geometry(marked, name, expect):
    img, arr = marked
    out = np.asarray(apply_transform(img, name))[..., 0]
    np.testing.assert_array_equal(out, expect(arr))


def test_unknown_transform():
    with pytest.raises(ValueError, match="unknown transform 'twirl'"):
        apply_transform(Image.new("RGB", (2, 2)), "twirl")


@pytest.mark.parametrize("workers", [1, 3])
def test_augments_train_split_only_once(clean_db, tiny_data, workers):
    from painting_ml.core.store import get_store
    from painting_ml.data.derived import cached_keys

    catalog.ingest(tiny_data, clean_db)
    cfg = RunConfig(data_dir=str(tiny_data), n_artists=3)
    version = create_dataset_version(cfg, select_artists(cfg, clean_db), clean_db)
    n = augment_version(version, ("hflip", "rot90"), 64, clean_db, workers=workers)
    _, items = load_items(version, clean_db)
    train = {i.filename for i in items if i.split == "train"}
    assert n == 2 * len(train)
    with psycopg.connect(clean_db) as conn:
        rows = conn.execute("SELECT source_filename, path FROM augmented_images").fetchall()
    assert {r[0] for r in rows} == train
    store = get_store()
    files = [store.local_path(key) for _, key in rows]  # store keys, not host paths
    assert all(not key.startswith("/") and f.is_file() for (_, key), f in zip(rows, files, strict=True))
    assert len(set(files)) == n
    # every split got its training-resolution copy (evaluation reads them too), long side <= 64
    keys = cached_keys(items, 64, clean_db)
    assert set(keys) == {i.filename for i in items}
    assert all(max(Image.open(store.local_path(k)).size) <= 64 for k in keys.values())
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert augment_version(version, ("hflip", "rot90"), 64, clean_db) == n
    assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_augmented_files_are_shared_by_versions(clean_db, tiny_data, monkeypatch):
    from painting_ml.data import derived

    catalog.ingest(tiny_data, clean_db)
    cfg = RunConfig(data_dir=str(tiny_data), n_artists=3, seed=1)
    v1 = create_dataset_version(cfg, select_artists(cfg, clean_db), clean_db)
    augment_version(v1, ("hflip",), 64, clean_db)
    other = RunConfig(data_dir=str(tiny_data), n_artists=3, seed=2)  # another split of the same paintings
    v2 = create_dataset_version(other, select_artists(other, clean_db), clean_db)
    decoded = []
    real = derived.read_rgb
    monkeypatch.setattr(derived, "read_rgb", lambda path, *a: decoded.append(path) or real(path, *a))
    augment_version(v2, ("hflip",), 64, clean_db)
    items = {v: {i.filename: i for i in load_items(v, clean_db)[1]} for v in (v1, v2)}
    train = {v: {f for f, i in items[v].items() if i.split == "train"} for v in (v1, v2)}
    # only paintings v1 did not have (its unseen-artist sample differs by seed) are decoded
    assert v1 != v2 and set(decoded) <= {i.path for f, i in items[v2].items() if f not in items[v1]}
    with psycopg.connect(clean_db) as conn:
        path = {(v, f): p for v, f, p in conn.execute("SELECT version_id, source_filename, path FROM augmented_images")}
    both = train[v1] & train[v2]
    assert both and all(path[(v1, f)] == path[(v2, f)] for f in both)  # one file per painting and transform


def test_rot45_is_a_real_45_degree_rotation_without_fill():
    img = Image.new("RGB", (101, 101), (0, 0, 0))
    img.putpixel((80, 50), (255, 255, 255))       # 30 px right of the centre
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            img.putpixel((80 + dx, 50 + dy), (255, 255, 255))
    out = apply_transform(img, "rot45")
    arr = np.asarray(out)[..., 0].astype(float)
    assert out.size == (71, 71)                    # largest inscribed square: 101 / sqrt(2)
    yy, xx = np.indices(arr.shape)
    cy, cx = (arr * yy).sum() / arr.sum(), (arr * xx).sum() / arr.sum()
    centre = (out.width - 1) / 2
    # counter-clockwise by 45 deg: (30, 0) -> (21.2, -21.2) in x-right/y-down image coordinates
    assert abs(cx - centre - 21.21) < 1.0 and abs(cy - centre + 21.21) < 1.0


def test_rot45_of_a_flat_image_has_no_fill_corners():
    out = np.asarray(apply_transform(Image.new("RGB", (120, 80), (200, 100, 50)), "rot45"))
    assert out.min(axis=(0, 1)).tolist() == [200, 100, 50]


def test_rot180_differs_from_rot90_and_all_names_are_distinct(marked):
    img, _ = marked
    outs = {t: np.asarray(apply_transform(img, t)).tobytes() for t in ("rot90", "rot180", "rot270", "hflip", "vflip")}
    assert len(set(outs.values())) == 5
