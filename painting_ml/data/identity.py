"""Painting identity: copies of one picture found by their hashes, and grouped.

Every usable painting carries the sha256 of its file's bytes and a 64-bit perceptual hash
(imagehash's pHash, see :func:`painting_ml.data.images.perceptual_hash`), both computed by the
ingest's probe. Two paintings are copies when their bytes are equal (``exact``) or their perceptual
hashes differ in at most :data:`NEAR_DISTANCE` bits (``near``: re-encoded, resized, colour-shifted
or grey versions; a crop of more than a few percent moves pHash too far and is not found). Copies
form groups (connected components), which the split keeps together and the data-quality gate checks.

The near search is multi-index hashing, not a comparison of every pair: the 64 bits are cut into
four 16-bit chunks; by pigeonhole a pair within distance ``t`` differs in at most ``t // 4`` bits of
one chunk, so each hash looks up, per chunk, the buckets of every chunk value within that radius
(a dense table of 65,536 buckets per chunk), and only those candidates are verified with
``np.bitwise_count``.

The pure functions take numpy arrays; :func:`update_duplicates` is the database edge the ingest
calls (statements in ``sql/identity.sql``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from painting_ml.core import db

#: Largest pHash Hamming distance of a near copy: between what re-encoded, resized, colour-jittered
#: and grey copies reach and what distinct paintings come down to (bench/dedup.py, docs/benchmarks.md).
NEAR_DISTANCE = 8
#: The four chunks (shift, width) the 64 bits are cut into for multi-index hashing.
_CHUNKS = ((0, 16), (16, 16), (32, 16), (48, 16))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distances of two int64 (or uint64) hash arrays, element by element."""
    return np.bitwise_count(np.bitwise_xor(a.view(np.uint64), b.view(np.uint64))).astype(np.int64)


def _flips(width: int, radius: int) -> np.ndarray:
    """Every ``width``-bit mask with at most ``radius`` bits set."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in itertools.combinations(range(width), r)]
    return np.asarray(masks, dtype=np.int64)


def near_pairs(hashes: np.ndarray, threshold: int = NEAR_DISTANCE,
               queries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of ``hashes`` within ``threshold`` bits, without comparing all pairs.

    Args:
        hashes: int64 perceptual hashes.
        threshold: the largest Hamming distance of a pair.
        queries: indices of the hashes to search for (an incremental ingest: the new ones); every
            pair with at least one of them is found. None: all pairs.

    Returns:
        ``(i, j, distance)`` arrays with ``i < j``, sorted by ``(i, j)``.
    """
    h = np.ascontiguousarray(hashes, dtype=np.int64).view(np.uint64)
    n = len(h)
    q = np.arange(n) if queries is None else np.unique(np.asarray(queries, dtype=np.int64))
    empty = np.zeros(0, dtype=np.int64)
    if n < 2 or len(q) == 0:
        return empty, empty, empty
    radius = threshold // len(_CHUNKS)
    found: list[np.ndarray] = []
    for shift, width in _CHUNKS:
        keys = ((h >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        counts = np.bincount(keys, minlength=1 << width)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        qkeys = keys[q]
        for flip in _flips(width, radius):
            probe = qkeys ^ flip
            cnt = counts[probe]
            hit = np.flatnonzero(cnt)
            if len(hit) == 0:
                continue
            cnt = cnt[hit]
            total = int(cnt.sum())
            offsets = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            other = order[np.repeat(starts[probe[hit]], cnt) + offsets]
            mine = np.repeat(q[hit], cnt)
            keep = (mine != other) & (hamming(h[mine], h[other]) <= threshold)
            lo, hi = np.minimum(mine[keep], other[keep]), np.maximum(mine[keep], other[keep])
            found.append(lo * n + hi)
    if not found:
        return empty, empty, empty
    pairs = np.unique(np.concatenate(found))
    i, j = pairs // n, pairs % n
    return i, j, hamming(h[i], h[j])


def group_labels(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The connected component of each of ``n`` items linked by the pairs ``(i, j)``."""
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels)


def group_keys(names: list[str], i: np.ndarray, j: np.ndarray) -> dict[str, str]:
    """``{name: group key}`` for every name in a group of two or more; the key is the group's
    smallest name (stable as long as that member stays)."""
    labels = group_labels(len(names), i, j)
    members: dict[int, list[str]] = {}
    for name, label in zip(names, labels.tolist(), strict=True):
        members.setdefault(label, []).append(name)
    return {name: min(group) for group in members.values() if len(group) > 1 for name in group}


@dataclass(frozen=True)
class DuplicateSummary:
    """What :func:`update_duplicates` found in one data root.

    Attributes:
        searched: paintings whose pairs were searched (all of them on a full update).
        pairs: pairs written by this update.
        groups: groups of the root afterwards.
        grouped: paintings in a group afterwards.
    """

    searched: int
    pairs: int
    groups: int
    grouped: int


def update_duplicates(conn: psycopg.Connection[Any], root: str, changed: list[str] | None = None,
                      threshold: int = NEAR_DISTANCE) -> DuplicateSummary:
    """Find the copies among ``root``'s paintings and rebuild its groups, in the caller's transaction.

    Args:
        conn: the connection whose transaction the update joins.
        root: the data root.
        changed: file names new or changed since the last update: only pairs with one of them
            are searched again. None: every pair of the root.
        threshold: the largest perceptual distance of a near copy.

    Returns:
        Counts of the search and of the root's groups afterwards.
    """
    rows = db.fetch_dicts(conn, db.sql("identity", "hashes"), {"root": root})
    names = [r["filename"] for r in rows]
    if changed is None:
        conn.execute(db.sql("identity", "delete_pairs"), {"root": root})
        queries = None
    else:
        conn.execute(db.sql("identity", "delete_pairs_of"), {"root": root, "names": changed})
        wanted = set(changed)
        queries = np.asarray([k for k, name in enumerate(names) if name in wanted], dtype=np.int64)
    hashes = np.asarray([r["phash"] for r in rows], dtype=np.int64)
    i, j, d = near_pairs(hashes, threshold, queries)
    sha = [r["sha256"] for r in rows]
    kinds = ["exact" if sha[a] is not None and sha[a] == sha[b] else "near"
             for a, b in zip(i.tolist(), j.tolist(), strict=True)]
    a_names = [names[k] for k in i.tolist()]
    b_names = [names[k] for k in j.tolist()]
    lo = [min(x, y) for x, y in zip(a_names, b_names, strict=True)]
    hi = [max(x, y) for x, y in zip(a_names, b_names, strict=True)]
    if lo:
        conn.execute(db.sql("identity", "insert_pairs"),
                     {"root": root, "a": lo, "b": hi, "kind": kinds, "distance": d.tolist()})
    pairs = db.fetch_dicts(conn, db.sql("identity", "pairs"), {"root": root})
    every = sorted({p["a"] for p in pairs} | {p["b"] for p in pairs})
    index = {name: k for k, name in enumerate(every)}
    keys = group_keys(every, np.asarray([index[p["a"]] for p in pairs], dtype=np.int64),
                      np.asarray([index[p["b"]] for p in pairs], dtype=np.int64))
    conn.execute(db.sql("identity", "delete_groups"), {"root": root})
    if keys:
        conn.execute(db.sql("identity", "insert_groups"),
                     {"root": root, "filename": list(keys), "group_key": list(keys.values())})
    return DuplicateSummary(searched=len(names) if queries is None else len(queries), pairs=len(lo),
                            groups=len(set(keys.values())), grouped=len(keys))


def groups_of_root(conn: psycopg.Connection[Any], root: str) -> tuple[dict[str, str], set[str]]:
    """The live paintings of ``root`` in a group (``{filename: group key}``), and the keys of the
    groups whose members carry different artists (conflicts)."""
    rows = db.fetch_dicts(conn, db.sql("identity", "groups_of_root"), {"root": root})
    artists: dict[str, set[str]] = {}
    for r in rows:
        artists.setdefault(r["group_key"], set()).add(r["artist"])
    return {r["filename"]: r["group_key"] for r in rows}, {k for k, a in artists.items() if len(a) > 1}


def describe_groups(data_dir: str | Path, url: str | None = None) -> str:
    """One line naming the duplicate groups of the data folder ``data_dir`` (for the demo and the CLI)."""
    from painting_ml.data.ingest.scan import resolve_root

    with db.connect(url) as conn:
        rows = db.fetch_dicts(conn, db.sql("identity", "groups_of_folder"), {"root": resolve_root(data_dir)})
    if not rows:
        return "no duplicate groups found"
    shown = "; ".join(f"{' = '.join(r['members'])} (distance ≤ {r['max_distance']}"
                      f"{', conflicting artists' if r['n_artists'] > 1 else ''})" for r in rows[:5])
    more = f"; {len(rows) - 5} more (view duplicate_groups)" if len(rows) > 5 else ""
    return f"{len(rows)} duplicate group(s) found: {shown}{more}"
