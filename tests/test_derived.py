"""The training-resolution image cache (painting_ml.data.derived)."""

import os
import shutil

import pytest
from PIL import Image

from painting_ml.core.config import RunConfig
from painting_ml.core.errors import DataError
from painting_ml.core.store import get_store
from painting_ml.data import derived
from painting_ml.data import ingest as catalog
from painting_ml.data.selection import select_artists
from painting_ml.data.versions import create_dataset_version, load_items

pytestmark = pytest.mark.db


@pytest.fixture
def version(clean_db, tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    catalog.ingest(data, clean_db)
    cfg = RunConfig(data_dir=str(data), n_artists=3)
    return data, create_dataset_version(cfg, select_artists(cfg, clean_db), clean_db)


def test_each_painting_is_decoded_once_and_again_only_when_it_changes(clean_db, version, monkeypatch):
    data, v = version
    _, items = load_items(v, clean_db)
    decoded = []
    real = derived.read_rgb
    monkeypatch.setattr(derived, "read_rgb", lambda path, *a: decoded.append(path) or real(path, *a))
    with pytest.raises(DataError, match="run the augment step"):
        derived.cached_paths(items, 40, clean_db)  # nothing cached at this size yet
    first = derived.derive_items(items, 40, clean_db)
    assert set(first) == {i.filename for i in items} and len(decoded) == len(items)
    paths = derived.cached_paths(items, 40, clean_db)
    assert all(max(Image.open(p).size) <= 40 for p in paths)

    decoded.clear()
    assert derived.derive_items(items, 40, clean_db) == first and decoded == []  # unchanged: no decode

    changed = next(i for i in items if i.split == "train")
    other = next(i for i in items if i.artist != changed.artist)
    shutil.copyfile(other.path, changed.path)  # its bytes are now another painting's: that copy exists
    second = derived.derive_items(items, 40, clean_db)
    assert decoded == [] and second[changed.filename] == first[other.filename] != first[changed.filename]

    Image.new("RGB", (48, 36), (200, 30, 90)).save(changed.path, "JPEG")  # new content
    third = derived.derive_items(items, 40, clean_db)
    assert decoded == [changed.path]  # exactly one decode
    assert third[changed.filename] not in first.values()
    assert {f: k for f, k in third.items() if f != changed.filename} == \
        {f: k for f, k in first.items() if f != changed.filename}


def test_copies_are_keys_in_the_store_not_host_paths(clean_db, version):
    _, v = version
    _, items = load_items(v, clean_db)
    keys = derived.derive_items(items[:3], 32, clean_db)
    store = get_store()
    assert all(k.startswith("derived/") and store.exists(k) for k in keys.values())


def test_a_painting_removed_after_ingest_is_one_clear_error(clean_db, version):
    _, v = version
    _, items = load_items(v, clean_db)
    os.remove(items[0].path)
    with pytest.raises(DataError, match=rf"{items[0].filename} .*is gone since the last ingest; rerun the ingest"):
        derived.derive_items(items, 36, clean_db)
