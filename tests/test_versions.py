import psycopg
import pytest

from painting_ml.core.config import RunConfig
from painting_ml.data import ingest as catalog
from painting_ml.data.selection import select_artists
from painting_ml.data.versions import create_dataset_version, equalise, load_items, stratified_split

pytestmark = pytest.mark.db


def test_stratified_split_covers_every_class_without_overlap():
    files = [f"{i}.jpg" for i in range(60)]
    labels = [i % 3 for i in range(60)]
    split = stratified_split(files, labels, 0.15, 0.2, seed=1)
    assert set(split) == set(files)
    for s in ("train", "val", "test"):
        got = {labels[int(f[:-4])] for f, v in split.items() if v == s}
        assert got == {0, 1, 2}
    assert sum(v == "test" for v in split.values()) == 12
    assert stratified_split(files, labels, 0.15, 0.2, seed=1) == split
    assert stratified_split(files, labels, 0.15, 0.2, seed=2) != split


def test_equalise_is_reproducible():
    files = {"a": [f"a{i}" for i in range(10)], "b": [f"b{i}" for i in range(4)]}
    out = equalise(files, 4, seed=3)
    assert [len(v) for v in out.values()] == [4, 4]
    assert out == equalise(files, 4, seed=3)


def test_dataset_version_is_stored_once(clean_db, tiny_data):
    catalog.ingest(tiny_data, clean_db)
    cfg = RunConfig(data_dir=str(tiny_data), n_artists=3, seed=5)
    sel = select_artists(cfg, clean_db)
    assert len(sel.artists) == 3  # the test-only artist has fewer paintings than min? no: top 3 by count
    v1 = create_dataset_version(cfg, sel, clean_db)
    v2 = create_dataset_version(cfg, sel, clean_db)
    assert v1 == v2
    artists, items = load_items(v1, clean_db)
    assert artists == sel.artists
    per_artist = {a: sum(i.artist == a for i in items) for a in artists}
    assert set(per_artist.values()) == {sel.per_artist}
    splits = {i.filename: i.split for i in items}
    assert len(splits) == len(items)  # every painting in exactly one split
    v3 = create_dataset_version(RunConfig(data_dir=str(tiny_data), n_artists=3, seed=6), sel, clean_db)
    assert v3 != v1
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM dataset_versions").fetchone()[0] == 2


def test_unseen_artists_and_no_leakage(clean_db, tiny_data, tmp_path):
    from painting_ml.data.augment import augment_version

    catalog.ingest(tiny_data, clean_db)
    cfg = RunConfig(data_dir=str(tiny_data), n_artists=2, seed=1)
    sel = select_artists(cfg, clean_db)
    version = create_dataset_version(cfg, sel, clean_db)
    _, items = load_items(version, clean_db)
    unseen = [i for i in items if i.split == "unseen"]
    assert unseen and {i.label for i in unseen} == {-1}
    assert not {i.artist for i in unseen} & set(sel.artists)
    assert len({i.artist for i in unseen}) == 2  # the third artist and the test-only one
    augment_version(version, ("hflip",), 64, clean_db)
    with psycopg.connect(clean_db) as conn:
        leaked = conn.execute(
            "SELECT count(*) FROM augmented_images a JOIN dataset_items i "
            "ON i.version_id = a.version_id AND i.filename = a.source_filename WHERE i.split <> 'train'"
        ).fetchone()[0]
    assert leaked == 0


def test_the_unseen_sample_does_not_change_the_version(clean_db, tiny_data, tmp_path):
    import csv
    import shutil

    data = tmp_path / "unseen"
    shutil.copytree(tiny_data, data)
    catalog.ingest(data, clean_db)
    cfg = RunConfig(data_dir=str(data), n_artists=2, seed=1)
    sel = select_artists(cfg, clean_db)
    v1 = create_dataset_version(cfg, sel, clean_db)
    _, items = load_items(v1, clean_db)
    unseen = [i for i in items if i.split == "unseen"]
    known = sorted((i.filename, i.split) for i in items if i.split != "unseen")

    with open(data / "all_data_info.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    outside = next(r for r in rows if r["artist"] == unseen[0].artist)
    src = next(p for p in data.rglob(outside["new_filename"]))
    for k in range(10):  # ten paintings added to an artist outside the selection
        shutil.copy(src, src.parent / f"new{k}.jpg")
        rows.append({**outside, "new_filename": f"new{k}.jpg"})

    def write(rows):
        with open(data / "all_data_info.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    write(rows)
    catalog.ingest(data, clean_db)
    assert create_dataset_version(cfg, sel, clean_db) == v1  # same train/val/test: same version

    write([r for r in rows if r["new_filename"] != unseen[0].filename])  # a painting of its unseen sample left
    catalog.ingest(data, clean_db)
    v2 = create_dataset_version(cfg, sel, clean_db)
    assert v2 != v1 and create_dataset_version(cfg, sel, clean_db) == v2
    _, items2 = load_items(v2, clean_db)
    assert sorted((i.filename, i.split) for i in items2 if i.split != "unseen") == known
    assert unseen[0].filename not in {i.filename for i in items2}
    assert {f"new{k}.jpg" for k in range(10)} <= {i.filename for i in items2 if i.split == "unseen"}
