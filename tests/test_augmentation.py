import numpy as np
import psycopg
import pytest
from PIL import Image

from painting_ml.data import ingest as catalog
from painting_ml.data.augment import apply_transform, augment_version
from painting_ml.core.config import RunConfig
from painting_ml.data.versions import create_dataset_version, load_items
from painting_ml.data.selection import select_artists


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
def test_augments_train_split_only_once(clean_db, tiny_data, tmp_path, workers):
    catalog.ingest(tiny_data, clean_db)
    cfg = RunConfig(data_dir=str(tiny_data), n_artists=3)
    version = create_dataset_version(cfg, select_artists(cfg, clean_db), clean_db)
    n = augment_version(version, ("hflip", "rot90"), clean_db, out_root=tmp_path, workers=workers)
    _, items = load_items(version, clean_db)
    train = {i.filename for i in items if i.split == "train"}
    assert n == 2 * len(train)
    with psycopg.connect(clean_db) as conn:
        sources = {r[0] for r in conn.execute("SELECT source_filename FROM augmented_images")}
    assert sources == train
    files = sorted(tmp_path.rglob("*.jpg"))
    assert len(files) == n
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert augment_version(version, ("hflip", "rot90"), clean_db, out_root=tmp_path) == n
    assert [f.stat().st_mtime_ns for f in sorted(tmp_path.rglob("*.jpg"))] == mtimes


def test_augmented_files_are_shared_by_versions(clean_db, tiny_data, tmp_path, monkeypatch):
    from painting_ml.data import augment

    catalog.ingest(tiny_data, clean_db)
    cfg = RunConfig(data_dir=str(tiny_data), n_artists=3, seed=1)
    v1 = create_dataset_version(cfg, select_artists(cfg, clean_db), clean_db)
    augment_version(v1, ("hflip",), clean_db, out_root=tmp_path)
    other = RunConfig(data_dir=str(tiny_data), n_artists=3, seed=2)  # another split of the same paintings
    v2 = create_dataset_version(other, select_artists(other, clean_db), clean_db)
    decoded = []
    real = augment.read_rgb
    monkeypatch.setattr(augment, "read_rgb", lambda path, *a: decoded.append(path) or real(path, *a))
    augment_version(v2, ("hflip",), clean_db, out_root=tmp_path)
    train = {v: {i.filename: i.path for i in load_items(v, clean_db)[1] if i.split == "train"} for v in (v1, v2)}
    assert v1 != v2 and sorted(decoded) == sorted(p for f, p in train[v2].items() if f not in train[v1])
    with psycopg.connect(clean_db) as conn:
        path = {(v, f): p for v, f, p in conn.execute("SELECT version_id, source_filename, path FROM augmented_images")}
    both = set(train[v1]) & set(train[v2])
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
