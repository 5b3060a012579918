"""The label audit's folds: every painting in exactly one fold, stratified by artist, a duplicate
group never straddling two folds; a fold version's held-out paintings never in its train or val."""

from collections import Counter

import pytest

from painting_ml.core.errors import DataError
from painting_ml.data.folds import fold_assignment, group_holdout, group_kfold

pytestmark = pytest.mark.unit


def _catalog(per_artist=(20, 15, 9), groups_every=4):
    files, labels, groups = [], [], {}
    for a, n in enumerate(per_artist):
        for i in range(n):
            f = f"{a}_{i:03d}.jpg"
            files.append(f)
            labels.append(f"artist{a}")
            if i % groups_every == 0 and i + 1 < n:  # a copy of the next painting: a group of two
                groups[f] = groups[f"{a}_{i + 1:03d}.jpg"] = f"g{a}_{i}"
    return files, labels, groups


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 7])
def test_each_painting_in_exactly_one_fold_groups_together_stratified(k, seed):
    files, labels, groups = _catalog()
    fold_of = group_kfold(files, labels, groups, k, seed)
    assert set(fold_of) == set(files) and set(fold_of.values()) == set(range(k))
    by_group: dict[str, set[int]] = {}
    for f, g in groups.items():
        by_group.setdefault(g, set()).add(fold_of[f])
    assert all(len(folds) == 1 for folds in by_group.values())  # no group straddles folds
    for artist in Counter(labels):
        per_fold = Counter(fold_of[f] for f, a in zip(files, labels, strict=True) if a == artist)
        # Stratified: each artist spread over every fold, none taking much more than its share.
        assert set(per_fold) == set(range(k))
        assert max(per_fold.values()) - min(per_fold.values()) <= 3, (artist, per_fold)


def test_same_seed_same_folds_other_seed_other_folds():
    files, labels, groups = _catalog()
    assert group_kfold(files, labels, groups, 5, 1) == group_kfold(files, labels, groups, 5, 1)
    assert group_kfold(files, labels, groups, 5, 1) != group_kfold(files, labels, groups, 5, 2)


def test_an_artist_with_fewer_paintings_than_folds_is_one_line_naming_it_and_the_fix():
    files, labels, groups = _catalog(per_artist=(20, 3))
    with pytest.raises(DataError) as err:
        group_kfold(files, labels, groups, 5, 0)
    message = str(err.value)
    assert "'artist1' has 3 painting(s), fewer than folds=5" in message and "lower `folds` to 3" in message
    assert "\n" not in message
    with pytest.raises(DataError, match="at least 2 folds"):
        group_kfold(files, labels, groups, 1, 0)


def test_holdout_is_group_aware_stratified_and_seeded():
    files, labels, groups = _catalog()
    val = group_holdout(files, labels, groups, 0.2, 3)
    assert val == group_holdout(files, labels, groups, 0.2, 3)
    for g in set(groups.values()):
        members = {f for f, h in groups.items() if h == g}
        assert members <= val or not members & val
    got = Counter(a for f, a in zip(files, labels, strict=True) if f in val)
    assert got == {"artist0": 4, "artist1": 3, "artist2": 2}  # round(n * 0.2) of each


def test_fold_versions_hold_out_exactly_their_fold():
    files, labels, groups = _catalog()
    artist_of = dict(zip(files, labels, strict=True))
    fold_of = group_kfold(files, labels, groups, 3, 0)
    tested: list[str] = []
    for fold in range(3):
        rows = fold_assignment(files, artist_of, groups, fold_of, fold, 0.15, 0)
        split = {f: s for f, _, s in rows}
        test = {f for f, s in split.items() if s == "test"}
        assert test == {f for f in files if fold_of[f] == fold}
        seen = {f for f, s in split.items() if s in ("train", "val")}
        assert not test & seen and test | seen == set(files)
        # No copy of a held-out painting is seen in training either.
        assert not {groups[f] for f in test if f in groups} & {groups[f] for f in seen if f in groups}
        assert {a for f, a, s in rows if s == "val"} == set(labels)  # every artist validated
        tested += sorted(test)
    assert sorted(tested) == sorted(files)  # every painting held out once
