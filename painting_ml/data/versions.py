"""Immutable dataset versions: a selection, equalised and split, stored once in Postgres.

The version's ``content_hash`` covers the selection config, the grouping of its paintings into
copies of one picture (see :mod:`painting_ml.data.identity`: a group never straddles two splits)
and every (file, artist, split) of its train/val/test splits, so asking again for the same config
on the same data returns the same version id. The ``unseen`` sample (paintings of artists outside
the selection, for open-set evaluation) is not part of that identity: paintings added outside the
selection keep the version (and its offline augmentation); only when a painting of the version
left the folder is a new one made, with the same identity and a fresh sample (``<hash>:<n>``).

A painting's artist is the curators' label override when one is in force, else the CSV's (see
``sql/datasets.sql``); a relabel changes a (file, artist) pair and so makes a new version, which
records in ``overrides_applied`` how many of its items carry an override.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb
from sklearn.model_selection import train_test_split

from painting_ml.core import db, locks
from painting_ml.core.config import RunConfig
from painting_ml.core.errors import DataError
from painting_ml.data.identity import groups_of_root
from painting_ml.data.selection import Selection

SPLITS = ("train", "val", "test")
UNSEEN = "unseen"


@dataclass(frozen=True)
class DatasetItem:
    filename: str
    artist: str
    label: int
    split: str
    path: str
    style: str | None = None
    genre: str | None = None
    gone: bool = False  # the painting left its folder after the version was made
    data_root: str | None = None
    rel_path: str | None = None

    def value(self, target: str) -> str | None:
        """The item's class name for ``target`` (artist, style or genre); None when unknown."""
        name: str | None = getattr(self, target)
        return name


def target_classes(items: list[DatasetItem], artists: list[str], targets: tuple[str, ...]) -> dict[str, list[str]]:
    """Class names per target: the version's artist order, and the sorted known styles/genres of
    its train/val/test paintings (index = class id)."""
    out = {"artist": list(artists)}
    for t in targets:
        if t != "artist":
            out[t] = sorted({v for i in items if i.split != UNSEEN and (v := i.value(t))})
    return {t: out[t] for t in targets}


def target_labels(items: list[DatasetItem], classes: dict[str, list[str]]) -> dict[str, list[int]]:
    """Integer labels per target for ``items``; -1 where a value is unknown (masked in the loss)."""
    out = {}
    for t, names in classes.items():
        index: dict[str | None, int] = {n: k for k, n in enumerate(names)}
        out[t] = [index.get(i.value(t), -1) for i in items]
    return out


def equalise(files_by_artist: dict[str, list[str]], take: dict[str, int] | int, seed: int) -> dict[str, list[str]]:
    """Undersample each artist to ``take[artist]`` (or ``take``) files, reproducibly (sorted, then seeded)."""
    rng = np.random.default_rng(seed)
    out = {}
    for artist in sorted(files_by_artist):
        files = sorted(files_by_artist[artist])
        n = take if isinstance(take, int) else take[artist]
        idx = rng.choice(len(files), size=min(n, len(files)), replace=False)
        out[artist] = sorted(files[i] for i in idx)
    return out


def sample_unseen(files: list[str], limit: int, seed: int) -> list[str]:
    """Up to ``limit`` paintings of non-selected artists, reproducibly."""
    files = sorted(files)
    if len(files) <= limit:
        return files
    rng = np.random.default_rng(seed + 7919)
    return sorted(files[i] for i in rng.choice(len(files), size=limit, replace=False))


def stratified_split(
    files: list[str], labels: list[int], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    """Assign each file to train/val/test, stratified by label; every class lands in every split.

    Returns:
        ``{filename: split}``.
    """
    n_classes = len(set(labels))
    n = len(files)
    n_test = max(n_classes, int(round(n * test_fraction)))
    n_val = max(n_classes, int(round(n * val_fraction)))
    rest, test, rest_y, _ = train_test_split(files, labels, test_size=n_test, stratify=labels, random_state=seed)
    train, val, _, _ = train_test_split(rest, rest_y, test_size=n_val, stratify=rest_y, random_state=seed + 1)
    return {**{f: "train" for f in train}, **{f: "val" for f in val}, **{f: "test" for f in test}}


def group_split(files: list[str], labels: list[int], groups: dict[str, str], val_fraction: float,
                test_fraction: float, seed: int) -> dict[str, str]:
    """Assign each file to train/val/test, stratified by label, keeping each group in one split.

    Files not in ``groups`` are groups of one. Without any group of two or more this is
    :func:`stratified_split`, unless a label has too few paintings for it (then they are dealt).
    Otherwise each label's groups are shuffled (seeded) and dealt to test, then val, while they
    fit the label's share of that split (in paintings, at least one); the rest, and every group
    larger than a split can take, go to train. A group whose members
    carry different labels is dealt with its most frequent label.

    Args:
        files: the file names.
        labels: their labels.
        groups: ``{filename: group key}`` of the files in a group.
        val_fraction: the val share of each label's paintings.
        test_fraction: the test share of each label's paintings.
        seed: the shuffle's seed.

    Returns:
        ``{filename: split}``.
    """
    members: dict[str, list[int]] = {}
    for k, f in enumerate(files):
        members.setdefault(groups.get(f, "\x00" + f), []).append(k)
    if all(len(m) == 1 for m in members.values()):
        try:
            return stratified_split(files, labels, val_fraction, test_fraction, seed)
        except ValueError:  # a label too rare for scikit-learn's stratified split: dealt below instead
            pass
    by_label: dict[int, list[str]] = {}
    for key in sorted(members):
        votes = [labels[k] for k in members[key]]
        label = max(sorted(set(votes)), key=votes.count)
        by_label.setdefault(label, []).append(key)
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for label in sorted(by_label):
        keys = by_label[label]
        size = sum(len(members[key]) for key in keys)
        room = {"test": max(1, round(size * test_fraction)), "val": max(1, round(size * val_fraction))}
        for idx in rng.permutation(len(keys)):
            group = members[keys[idx]]
            split = next((s for s in ("test", "val") if len(group) <= room[s]), "train")
            if split != "train":
                room[split] -= len(group)
            out.update((files[k], split) for k in group)
    return out


def grouping_digest(groups: dict[str, str], files: list[str]) -> str | None:
    """A digest of how ``files`` are grouped (None when none of them is in a group): part of a
    version's identity, so a changed grouping makes a new version."""
    pairs = sorted((f, groups[f]) for f in files if f in groups)
    if not pairs:
        return None
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def content_hash(config: dict[str, Any], assignment: list[tuple[str, str, str]]) -> str:
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for row in sorted(assignment):
        h.update("\x1f".join(row).encode())
        h.update(b"\x1e")
    return h.hexdigest()


def selected_rows(conn: Any, cfg: RunConfig, selection: Selection,
                  root: str) -> tuple[list[dict[str, Any]], dict[str, str], set[str]]:
    """The selected artists' live paintings of ``root`` (``filename``, ``artist`` with the curators'
    label overrides applied, ``overridden``), the folder's duplicate groups (file -> group key) and
    the files of conflicting groups to leave out (none unless ``cfg.exclude_conflicting_duplicates``)."""
    rows = db.fetch_dicts(conn, db.sql("datasets", "files_of_artists"), {"root": root, "artists": selection.artists})
    groups, conflicts = groups_of_root(conn, root)
    excluded = {f for f, g in groups.items() if g in conflicts} if cfg.exclude_conflicting_duplicates else set()
    return rows, groups, excluded


def create_dataset_version(cfg: RunConfig, selection: Selection, url: str | None = None) -> int:
    """Equalise and split the selection, store it (once) and return the dataset version id.

    Only live paintings of the run's data folder (``cfg.data_dir``) are used; the folder is part of
    the version's content hash, so two folders never share a version.
    """
    from painting_ml.data.ingest import resolve_root

    root = resolve_root(cfg.data_dir)
    with db.connect(url) as conn:
        rows, groups, excluded = selected_rows(conn, cfg, selection, root)
        overridden = {r["filename"] for r in rows if r["overridden"]}
        by_artist: dict[str, list[str]] = {}
        for r in rows:
            if r["filename"] not in excluded:
                by_artist.setdefault(r["artist"], []).append(r["filename"])
        chosen = equalise(by_artist, selection.take, cfg.seed)
        label_of = {a: i for i, a in enumerate(selection.artists)}
        files = [f for a in selection.artists for f in chosen[a]]
        labels = [label_of[a] for a in selection.artists for _ in chosen[a]]
        split_of = group_split(files, labels, groups, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        artist_of = {f: a for a in selection.artists for f in chosen[a]}
        assignment = [(f, artist_of[f], split_of[f]) for f in files]
        others = db.fetch_dicts(conn, db.sql("datasets", "files_of_other_artists"),
                                {"root": root, "artists": selection.artists})
        # A painting outside the selection whose copy is in it would be a seen picture in the
        # open-set sample: such groups stay out of it.
        chosen_groups = {groups[f] for f in files if f in groups}
        other_artist = {r["filename"]: r["artist"] for r in others
                        if r["filename"] not in excluded and groups.get(r["filename"]) not in chosen_groups}
        overridden |= {r["filename"] for r in others if r["overridden"]}
        unseen = sample_unseen(list(other_artist), cfg.unseen_limit, cfg.seed)
        assignment += [(f, other_artist[f], UNSEEN) for f in unseen]
        key = {**cfg.selection_key(), "selected": selection.artists, "take": selection.take, "data_root": root}
        # Only a catalog with copies adds these, so a version without any keeps its identity.
        if (grouping := grouping_digest(groups, files)) is not None:
            key["grouping"] = grouping
        if excluded:
            key["excluded_conflicting_groups"] = len({groups[f] for f in excluded})
        # The identity is the train/val/test assignment: the unseen sample changes whenever any
        # painting outside the selection comes or goes, which must not make a new version (and
        # redo its augmentation) when what is trained on is the same.
        identity = content_hash(key, [a for a in assignment if a[2] != UNSEEN])
        counts: dict[str, dict[str, int]] = {a: {s: 0 for s in SPLITS} for a in selection.artists}
        counts[UNSEEN] = {"artists": len(set(other_artist[f] for f in unseen)), "paintings": len(unseen)}
        for _, a, s in assignment:
            if s != UNSEEN:
                counts[a][s] += 1
        conn.execute(db.sql("datasets", "lock"), {"lock": locks.DATASET_VERSION})  # one creator per hash
        # A version of this identity is reused, with the unseen sample drawn when it was made,
        # while none of its paintings left the folder; else a new one (same identity, ":<n>")
        # gets today's sample.
        same = db.fetch_dicts(conn, db.sql("datasets", "versions_of_identity"),
                              {"hash": identity, "prefix": identity + ":%"})
        usable = [v for v in same if not v["uses_gone"]]
        if usable:
            return int(usable[0]["id"])
        digest = identity if not same else f"{identity}:{len(same)}"
        version_id = db.fetch_one(
            conn, db.sql("datasets", "insert_version"),
            {"hash": digest, "config": Jsonb(key), "artists": Jsonb(selection.artists), "counts": Jsonb(counts),
             "root": root, "overrides": sum(f in overridden for f, _, _ in assignment)},
            required=True,
        )["id"]
        with conn.cursor() as cur, cur.copy(db.sql("datasets", "copy_items")) as copy:
            for f, a, s in assignment:
                copy.write_row((version_id, root, f, a, label_of.get(a, -1), s))
        return int(version_id)


def load_items(version_id: int, url: str | None = None, *,
               history: bool = False) -> tuple[list[str], list[DatasetItem]]:
    """Return the version's artist list (class order) and its items.

    Args:
        history: also return items whose painting left its folder since (``gone``), to look at
            an old version. Otherwise such a version is refused: whatever reads the items next
            opens their files, and a run must never train or evaluate on a missing file.

    Raises:
        DataError: the version references gone paintings (and ``history`` is False).
    """
    with db.connect(url) as conn:
        found = db.fetch_one(conn, db.sql("datasets", "get_version"), {"id": version_id})
        if not found:
            raise LookupError(f"dataset version {version_id} does not exist")
        rows = db.fetch_dicts(conn, db.sql("datasets", "items"), {"id": version_id})
    items = [DatasetItem(**r) for r in rows]
    gone = [i.filename for i in items if i.gone]
    if gone and not history:
        folder = found["data_root"] or "their folder"
        raise DataError(
            f"dataset version {version_id} uses {len(gone)} painting(s) that left {folder} since it was made "
            f"(e.g. {', '.join(gone[:3])}); it is kept as history only — select and split again (a new run "
            "does) to get a version of what is there now")
    return list(found["artists"]), items
