"""The k folds of a label audit: every labelled painting of the selected artists in exactly one
fold, stratified by artist, each group of copies of one picture in one fold.

Fold ``i`` becomes a dataset version of its own (its paintings the test split, a seeded
group-aware slice of the rest the validation split, the remainder the train split) that the
ordinary training engine trains; the model of fold ``i`` then judges exactly the paintings it
never saw. A separate version, the audited set, lists every audited painting once (split
``test``): its artist order is the class order of the audit's probabilities.

Unlike a retrain's version the audited set is not equalised: every painting gets its out-of-fold
probabilities, and the fold trainings weigh the artists by class weights.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb

from painting_ml.core import db, locks
from painting_ml.core.config import RunConfig
from painting_ml.core.errors import DataError
from painting_ml.data.selection import Selection
from painting_ml.data.versions import content_hash, grouping_digest, selected_rows


def _members(files: Sequence[str], groups: dict[str, str]) -> dict[str, list[int]]:
    """Group key -> indexes into ``files``; a file in no group is a group of one."""
    out: dict[str, list[int]] = {}
    for k, f in enumerate(files):
        out.setdefault(groups.get(f, "\x00" + f), []).append(k)
    return out


def group_kfold(files: Sequence[str], labels: Sequence[str | int], groups: dict[str, str], k: int,
                seed: int) -> dict[str, int]:
    """Deal ``files`` into ``k`` folds, stratified by label, each group in one fold.

    Args:
        files: the file names (unique).
        labels: their labels (artist names or class ids).
        groups: ``{filename: group key}`` of the files in a duplicate group; files not in it are
            groups of one.
        k: the number of folds (at least 2).
        seed: the shuffle's seed (same inputs and seed, same folds).

    Returns:
        ``{filename: fold}`` with folds ``0 .. k-1``.

    Raises:
        DataError: a label has fewer paintings (or groups) than ``k`` (one line naming the artist).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if k < 2:
        raise DataError(f"folds={k}: an audit needs at least 2 folds; set folds to 2 or more (default 5)")
    if len(set(files)) != len(files):
        raise ValueError("group_kfold: file names must be unique")
    counts: dict[str | int, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    short = sorted((n, str(label)) for label, n in counts.items() if n < k)
    if short:
        n, name = short[0]
        raise DataError(f"artist {name!r} has {n} painting(s), fewer than folds={k}: every fold must hold out "
                        f"some of each artist; lower `folds` to {max(2, n)} or leave the artist out")
    members = _members(files, groups)
    if len(members) < k:
        raise DataError(f"only {len(members)} distinct pictures (duplicate groups counted once) for folds={k}; "
                        f"lower `folds` to {len(members)} or fewer")
    key_of = {k_: key for key, idx in members.items() for k_ in idx}
    group_ids = {key: n for n, key in enumerate(sorted(members))}
    y = np.asarray([str(label) for label in labels])
    g = np.asarray([group_ids[key_of[i]] for i in range(len(files))])
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    out: dict[str, int] = {}
    with warnings.catch_warnings():  # "least populated class < n_splits" is checked above, per artist
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, test) in enumerate(splitter.split(np.zeros(len(files)), y, g)):
            out.update((files[i], fold) for i in test)
    return out


def group_holdout(files: Sequence[str], labels: Sequence[str | int], groups: dict[str, str], fraction: float,
                  seed: int) -> set[str]:
    """A seeded, stratified, group-aware slice of ``files`` (a fold's validation split).

    Each label's groups are shuffled and dealt to the slice while they fit its share
    (``round(n * fraction)`` paintings, at least one), smallest first so a large group never takes
    a label's whole share; a label with a single group keeps it out of the slice (it must train).

    Returns:
        The files of the slice.
    """
    members = _members(files, groups)
    by_label: dict[str, list[str]] = {}
    for key in sorted(members):
        votes = [str(labels[i]) for i in members[key]]
        by_label.setdefault(max(sorted(set(votes)), key=votes.count), []).append(key)
    rng = np.random.default_rng(seed)
    out: set[str] = set()
    for label in sorted(by_label):
        keys = by_label[label]
        if len(keys) < 2:
            continue
        size = sum(len(members[key]) for key in keys)
        room = max(1, round(size * fraction))
        order = [keys[i] for i in rng.permutation(len(keys))]
        for key in sorted(order, key=lambda key_: len(members[key_])):  # stable: ties keep the shuffle
            if len(members[key]) <= room:
                room -= len(members[key])
                out.update(files[i] for i in members[key])
            if room <= 0:
                break
    return out


@dataclass(frozen=True)
class AuditPlan:
    """An audit's dataset versions: the audited set and one version per fold (index = fold)."""

    audited_version_id: int
    fold_version_ids: list[int]
    artists: list[str]
    paintings: int

    def to_dict(self) -> dict[str, Any]:
        return {"audited_version_id": self.audited_version_id, "fold_version_ids": self.fold_version_ids,
                "artists": self.artists, "paintings": self.paintings}


def fold_assignment(files: list[str], artist_of: dict[str, str], groups: dict[str, str], fold_of: dict[str, int],
                    fold: int, val_fraction: float, seed: int) -> list[tuple[str, str, str]]:
    """(file, artist, split) of fold ``fold``'s version: its files test, a slice of the rest val."""
    rest = [f for f in files if fold_of[f] != fold]
    val = group_holdout(rest, [artist_of[f] for f in rest], groups, val_fraction, seed + fold)
    return [(f, artist_of[f], "test" if fold_of[f] == fold else "val" if f in val else "train") for f in files]


def create_audit_versions(cfg: RunConfig, selection: Selection, folds: int, url: str | None = None) -> AuditPlan:
    """Store the audited set and its ``folds`` fold versions (each once: asking again for the same
    config on the same catalog returns the same ids) and return their ids.

    The audited set is every live painting of the selected artists in ``cfg.data_dir`` (the
    artist with the curators' label override applied), without the conflicting duplicate groups
    when ``cfg.exclude_conflicting_duplicates``. No unseen sample: a fold run is never evaluated
    as a candidate.

    Raises:
        DataError: an artist has fewer paintings than ``folds`` (one line: lower ``folds``).
    """
    from painting_ml.data.ingest import resolve_root

    root = resolve_root(cfg.data_dir)
    with db.connect(url) as conn:
        rows, groups, excluded = selected_rows(conn, cfg, selection, root)
        kept = [r for r in rows if r["filename"] not in excluded]
        artist_of = {r["filename"]: r["artist"] for r in kept}
        overridden = {r["filename"] for r in kept if r.get("overridden")}
        files = sorted(artist_of)
        missing = [a for a in selection.artists if a not in set(artist_of.values())]
        if missing:
            raise DataError(f"artist {missing[0]!r} has no usable painting left in {root}; select again")
        fold_of = group_kfold(files, [artist_of[f] for f in files], groups, folds, cfg.seed)
        base = {**cfg.selection_key(), "selected": selection.artists, "data_root": root}
        if (grouping := grouping_digest(groups, files)) is not None:
            base["grouping"] = grouping
        if excluded:
            base["excluded_conflicting_groups"] = len({groups[f] for f in excluded})
        conn.execute(db.sql("datasets", "lock"), {"lock": locks.DATASET_VERSION})  # one creator per hash
        audited = _store_version(conn, {**base, "audit": {"folds": folds, "set": "audited"}},
                                 [(f, artist_of[f], "test") for f in files], selection.artists, root, overridden)
        fold_ids = [_store_version(conn, {**base, "audit": {"folds": folds, "fold": i}},
                                   fold_assignment(files, artist_of, groups, fold_of, i, cfg.val_fraction, cfg.seed),
                                   selection.artists, root, overridden)
                    for i in range(folds)]
    return AuditPlan(audited, fold_ids, list(selection.artists), len(files))


def _store_version(conn: Any, key: dict[str, Any], assignment: list[tuple[str, str, str]], artists: list[str],
                   root: str, overridden: set[str]) -> int:
    """Insert one version (or find it: same content hash and none of its paintings gone)."""
    identity = content_hash(key, assignment)
    same = db.fetch_dicts(conn, db.sql("datasets", "versions_of_identity"),
                          {"hash": identity, "prefix": identity + ":%"})
    usable = [v for v in same if not v["uses_gone"]]
    if usable:
        return int(usable[0]["id"])
    counts = {a: {"train": 0, "val": 0, "test": 0} for a in artists}
    for _, a, s in assignment:
        counts[a][s] += 1
    label_of = {a: i for i, a in enumerate(artists)}
    version_id = int(db.fetch_one(conn, db.sql("datasets", "insert_version"), {
        "hash": identity if not same else f"{identity}:{len(same)}", "config": Jsonb(key), "artists": Jsonb(artists),
        "counts": Jsonb(counts), "root": root, "overrides": sum(f in overridden for f, _, _ in assignment)},
        required=True)["id"])
    with conn.cursor() as cur, cur.copy(db.sql("datasets", "copy_items")) as copy:
        for f, a, s in assignment:
            copy.write_row((version_id, root, f, a, label_of[a], s))
    return version_id
