import csv
import shutil

import numpy as np
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from painting_ml.core.config import RunConfig
from painting_ml.core.errors import DataQualityError
from painting_ml.data import identity
from painting_ml.data import ingest as catalog
from painting_ml.data.selection import select_artists
from painting_ml.data.validation import check_leakage, validate_dataset
from painting_ml.data.versions import create_dataset_version, group_split, load_items

pytestmark = pytest.mark.db


def _brute(hashes, threshold):
    i, j = np.triu_indices(len(hashes), 1)
    d = identity.hamming(hashes[i], hashes[j])
    ok = d <= threshold
    return set(zip(i[ok].tolist(), j[ok].tolist(), strict=True))


@pytest.mark.parametrize("threshold", [0, 3, 8, 10, 12])
def test_near_pairs_equals_every_pair_compared(threshold):
    rng = np.random.default_rng(threshold)
    base = rng.integers(-2**63, 2**63 - 1, size=300, dtype=np.int64)
    flips = rng.integers(0, 64, size=(300, threshold + 2))
    near = base.view(np.uint64).copy()
    for k in range(300):
        for b in flips[k, : rng.integers(0, threshold + 3)]:
            near[k] ^= np.uint64(1) << np.uint64(int(b))
    hashes = np.concatenate([base, near.view(np.int64)])
    i, j, d = identity.near_pairs(hashes, threshold)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == _brute(hashes, threshold)
    assert (d <= threshold).all()
    # Searching only some hashes finds exactly the pairs that involve one of them.
    queries = np.arange(300, 400)
    qi, qj, _ = identity.near_pairs(hashes, threshold, queries)
    assert set(zip(qi.tolist(), qj.tolist(), strict=True)) == {
        p for p in _brute(hashes, threshold) if 300 <= p[0] < 400 or 300 <= p[1] < 400}


def test_group_keys_are_connected_components():
    names = ["a", "b", "c", "d", "e"]
    keys = identity.group_keys(names, np.array([0, 1]), np.array([1, 2]))
    assert keys == {"a": "a", "b": "a", "c": "a"}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 14), min_size=12, max_size=80), st.booleans(), st.integers(0, 99))
def test_group_split_never_puts_a_group_in_two_splits(group_ids, by_group, seed):
    files = [f"{k}.jpg" for k in range(len(group_ids))]
    # Labels per painting (groups may then mix labels) or per group (copies share their artist).
    labels = [(g if by_group and g < 10 else k) % 3 for k, g in enumerate(group_ids)]
    groups = {f: f"g{g}" for f, g in zip(files, group_ids, strict=True) if g < 10}
    split = group_split(files, labels, groups, 0.15, 0.2, seed)
    assert set(split) == set(files)
    by_group: dict[str, set[str]] = {}
    for f, g in groups.items():
        by_group.setdefault(g, set()).add(split[f])
    assert all(len(s) == 1 for s in by_group.values())


def test_group_split_without_groups_is_the_stratified_split():
    from painting_ml.data.versions import stratified_split

    files = [f"{i}.jpg" for i in range(30)]
    labels = [i % 3 for i in range(30)]
    assert group_split(files, labels, {}, 0.15, 0.2, 1) == stratified_split(files, labels, 0.15, 0.2, 1)


def test_leakage_check_fails_on_any_straddle():
    assert check_leakage([]) == []
    (finding,) = check_leakage(["x.jpg"])
    assert finding.level == "failure" and finding.check == "leakage"


@pytest.fixture
def copied_data(tmp_path, tiny_data):
    """``tiny_data`` plus, for two paintings of the first artist: an exact copy under another
    artist's name (a conflict) and a resized, re-encoded copy under the same artist."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    with open(data / "all_data_info.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    good = [r for r in rows if (data / "train" / r["new_filename"]).is_file()
            and (data / "train" / r["new_filename"]).stat().st_size > 1000]
    artists = sorted({r["artist"] for r in good})
    first = [r for r in good if r["artist"] == artists[0]][:2]
    extra = []
    src = data / "train" / first[0]["new_filename"]
    shutil.copy(src, data / "train" / "exact_copy.jpg")
    extra.append({**first[0], "artist": artists[1], "new_filename": "exact_copy.jpg"})
    with Image.open(data / "train" / first[1]["new_filename"]) as im:
        im.convert("RGB").resize((im.width * 2, im.height * 2)).save(data / "train" / "near_copy.jpg", quality=70)
    extra.append({**first[1], "new_filename": "near_copy.jpg"})
    with open(data / "all_data_info.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows + extra)
    return data, first[0]["new_filename"], first[1]["new_filename"]


def test_copies_are_hashed_grouped_and_kept_out_of_leaks(clean_db, copied_data):
    data, exact_of, near_of = copied_data
    summary = catalog.ingest(data, clean_db)
    assert summary.duplicate_groups >= 2
    with psycopg.connect(clean_db) as conn:
        missing = conn.execute("SELECT count(*) FROM paintings WHERE sha256 IS NULL OR phash IS NULL").fetchone()[0]
        manifest = conn.execute("SELECT count(*) FROM ingest_files WHERE reason IS NULL AND phash IS NULL").fetchone()
        pairs = {(a, b): (kind, d)
                 for a, b, kind, d in conn.execute("SELECT a, b, kind, distance FROM duplicate_pairs")}
        conflicts = conn.execute("SELECT members FROM conflicting_duplicates").fetchall()
        groups = conn.execute("SELECT members, n_artists FROM duplicate_groups").fetchall()
    assert missing == 0 and manifest[0] == 0
    assert pairs[tuple(sorted((exact_of, "exact_copy.jpg")))] == ("exact", 0)
    kind, distance = pairs[tuple(sorted((near_of, "near_copy.jpg")))]
    assert kind == "near" and distance <= identity.NEAR_DISTANCE
    assert any(sorted(m) == sorted([exact_of, "exact_copy.jpg"]) for (m,) in conflicts)
    assert any(set(m) >= {near_of, "near_copy.jpg"} and n == 1 for m, n in groups)

    # An unchanged folder is not decoded (nor hashed) again, and its groups stay.
    again = catalog.ingest(data, clean_db)
    assert again.probed == 0 and again.duplicate_groups == summary.duplicate_groups

    cfg = RunConfig(data_dir=str(data), n_artists=3, min_per_artist=3, min_split_paintings=1,
                    warn_split_paintings=1)
    version = create_dataset_version(cfg, select_artists(cfg, clean_db), clean_db)
    _, items = load_items(version, clean_db)
    names = {i.filename for i in items}
    assert exact_of not in names and "exact_copy.jpg" not in names  # the conflict is left out
    split_of = {i.filename: i.split for i in items}
    if near_of in split_of:
        assert split_of[near_of] == split_of["near_copy.jpg"]
    result = validate_dataset(cfg, version, clean_db)
    assert "leakage" not in {f["check"] for f in result["findings"]}

    kept = cfg.model_copy(update={"exclude_conflicting_duplicates": False})
    with_conflicts = create_dataset_version(kept, select_artists(kept, clean_db), clean_db)
    assert with_conflicts != version

    # A forged straddle (a copy moved to another split) fails the gate.
    with psycopg.connect(clean_db) as conn:
        split = conn.execute("SELECT split FROM dataset_items WHERE version_id = %s AND filename = %s",
                             (version, near_of)).fetchone()[0]
        other = "test" if split != "test" else "train"
        conn.execute("UPDATE dataset_items SET split = %s WHERE version_id = %s AND filename = %s",
                     (other, version, "near_copy.jpg"))
    with pytest.raises(DataQualityError, match="leakage"):
        validate_dataset(cfg, version, clean_db)


def test_a_relabel_of_one_copy_makes_its_group_a_conflict(clean_db, copied_data):
    from painting_ml.data.ingest import resolve_root
    from painting_ml.results import reviews

    data, _, near_of = copied_data
    catalog.ingest(data, clean_db)
    cfg = RunConfig(data_dir=str(data), n_artists=3, min_per_artist=3, min_split_paintings=1,
                    warn_split_paintings=1)
    before = {i.filename for i in load_items(create_dataset_version(cfg, select_artists(cfg, clean_db), clean_db),
                                             clean_db)[1]}
    assert {near_of, "near_copy.jpg"} <= before
    with psycopg.connect(clean_db) as conn:
        artist, other = conn.execute(
            "SELECT p.artist, (SELECT min(q.artist) FROM paintings q WHERE q.data_root = p.data_root "
            "AND q.artist <> p.artist) FROM paintings p WHERE p.filename = 'near_copy.jpg'").fetchone()
    row = reviews.review(resolve_root(data), "near_copy.jpg", "relabel", "alice", new_artist=other, url=clean_db)
    assert row["conflicting_copies"] == [{"filename": near_of, "artist": artist}]  # the curator is told
    version = create_dataset_version(cfg, select_artists(cfg, clean_db), clean_db)
    names = {i.filename for i in load_items(version, clean_db)[1]}
    assert near_of not in names and "near_copy.jpg" not in names  # one picture, two labels: left out
    assert artist != other


def test_an_incremental_ingest_searches_only_new_paintings(clean_db, copied_data):
    data, _, near_of = copied_data
    catalog.ingest(data, clean_db)
    shutil.copy(data / "train" / near_of, data / "train" / "late_copy.jpg")
    with open(data / "all_data_info.csv", encoding="utf-8") as f:
        last = list(csv.DictReader(f))[-1]
    with open(data / "all_data_info.csv", "a", newline="", encoding="utf-8") as f:
        csv.DictWriter(f, fieldnames=list(last)).writerow({**last, "new_filename": "late_copy.jpg"})
    summary = catalog.ingest(data, clean_db)
    assert summary.probed == 1
    with psycopg.connect(clean_db) as conn:
        group = conn.execute("SELECT g.group_key FROM painting_groups g WHERE filename = 'late_copy.jpg'").fetchone()
        members = {r[0] for r in conn.execute("SELECT filename FROM painting_groups WHERE group_key = %s", group)}
    assert {near_of, "near_copy.jpg", "late_copy.jpg"} <= members


def test_generated_copies_are_found(clean_db, tmp_path):
    from painting_ml.data.identity import describe_groups
    from painting_ml.data.synth import generate

    data = tmp_path / "data"
    counts = generate(data, artists=3, per_artist=6, size=64, seed=2, test_only_artists=0, broken=0, copies=3)
    assert counts["copies"] == 3
    summary = catalog.ingest(data, clean_db)
    assert summary.loaded == counts["paintings"] - 1  # the one missing file
    assert summary.duplicate_groups == 3
    assert describe_groups(data, clean_db).startswith("3 duplicate group(s) found: ")
