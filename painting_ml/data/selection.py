"""Choose which artists to train on, counting usable paintings (the metadata over-states them).

Strategies:
    ``top``       the N artists with the most usable paintings, equalised to the smallest of them.
    ``balanced``  the N artists whose counts are closest to each other (smallest max/min ratio;
                  ties go to the larger counts), equalised to the smallest.
    ``capped``    the top N, each undersampled to at most ``cap``; what stays imbalanced is
                  handled with class weights in training.
    ``list``      exactly the artists named in ``artists``, equalised to the smallest.
Every strategy skips artists with fewer than ``min_per_artist`` usable paintings.

Paintings are counted under the curators' label override where one is in force (a ``relabel``
verdict, see :mod:`painting_ml.results.reviews`), else under the CSV's artist.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from painting_ml.core import db
from painting_ml.core.config import RunConfig
from painting_ml.core.errors import SelectionError


@dataclass(frozen=True)
class Selection:
    """The chosen artists (sorted: the index is the class id) and how many paintings of each to use."""

    artists: list[str]
    take: dict[str, int]
    available: dict[str, int]

    @property
    def per_artist(self) -> int:
        """The smallest per-artist count (equal to all of them unless the strategy is capped)."""
        return min(self.take.values())

    def to_dict(self) -> dict[str, object]:
        return {"artists": self.artists, "take": self.take, "available": self.available}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Selection:
        return cls(list(d["artists"]), {k: int(v) for k, v in d["take"].items()}, dict(d["available"]))


def _eligible(counts: dict[str, int], min_per_artist: int) -> list[tuple[int, str]]:
    """(count, artist) pairs that qualify, most paintings first, ties by name."""
    return sorted(((c, a) for a, c in counts.items() if c >= min_per_artist), key=lambda t: (-t[0], t[1]))


def _too_few(n: int, min_per_artist: int, eligible: list[tuple[int, str]]) -> SelectionError:
    shown = ", ".join(f"{a} ({c})" for c, a in eligible[:20]) or "none"
    more = f" and {len(eligible) - 20} more" if len(eligible) > 20 else ""
    return SelectionError(
        f"asked for {n} artists with at least {min_per_artist} usable paintings, but only "
        f"{len(eligible)} qualify: {shown}{more}; lower n_artists or min_per_artist, or ingest more data"
    )


def _equalised(chosen: list[tuple[int, str]]) -> Selection:
    smallest = min(c for c, _ in chosen)
    return Selection(sorted(a for _, a in chosen), {a: smallest for _, a in chosen}, {a: c for c, a in chosen})


def choose_top(counts: dict[str, int], n: int, min_per_artist: int) -> Selection:
    """Top ``n`` artists by usable paintings (ties by name), equalised to the smallest of them."""
    eligible = _eligible(counts, min_per_artist)
    if len(eligible) < n:
        raise _too_few(n, min_per_artist, eligible)
    return _equalised(eligible[:n])


def choose_balanced(counts: dict[str, int], n: int, min_per_artist: int) -> Selection:
    """The ``n`` artists with the most similar counts (minimal max/min ratio, then larger counts)."""
    eligible = _eligible(counts, min_per_artist)
    if len(eligible) < n:
        raise _too_few(n, min_per_artist, eligible)
    # In count order, the most similar n artists are a contiguous window.
    best = min(range(len(eligible) - n + 1),
               key=lambda i: (eligible[i][0] / eligible[i + n - 1][0], -eligible[i + n - 1][0], i))
    return _equalised(eligible[best:best + n])


def choose_capped(counts: dict[str, int], n: int, min_per_artist: int, cap: int) -> Selection:
    """Top ``n`` artists, each undersampled to at most ``cap`` paintings (imbalance may remain)."""
    eligible = _eligible(counts, min_per_artist)
    if len(eligible) < n:
        raise _too_few(n, min_per_artist, eligible)
    chosen = eligible[:n]
    return Selection(sorted(a for _, a in chosen), {a: min(c, cap) for c, a in chosen}, {a: c for c, a in chosen})


def choose_listed(counts: dict[str, int], artists: tuple[str, ...], min_per_artist: int) -> Selection:
    """Exactly ``artists``; each must exist with at least ``min_per_artist`` usable paintings."""
    problems = []
    for a in artists:
        if a not in counts:
            close = difflib.get_close_matches(a, list(counts), n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            problems.append(f"{a!r} has no usable paintings{hint}")
        elif counts[a] < min_per_artist:
            problems.append(f"{a!r} has only {counts[a]} usable paintings (< min_per_artist {min_per_artist})")
    if problems:
        raise SelectionError("cannot use the artist list: " + "; ".join(problems))
    return _equalised([(counts[a], a) for a in artists])


def choose(counts: dict[str, int], cfg: RunConfig) -> Selection:
    """Apply ``cfg.strategy`` to per-artist usable counts."""
    if not counts:
        raise SelectionError(f"no usable paintings from {cfg.data_dir} in the database; run "
                             f"`painting-ml ingest --data-dir {cfg.data_dir}` first")
    if cfg.strategy == "top":
        return choose_top(counts, cfg.n_artists, cfg.min_per_artist)
    if cfg.strategy == "balanced":
        return choose_balanced(counts, cfg.n_artists, cfg.min_per_artist)
    if cfg.strategy == "capped":
        return choose_capped(counts, cfg.n_artists, cfg.min_per_artist, cfg.cap)
    return choose_listed(counts, cfg.artists, cfg.min_per_artist)


def usable_counts(data_dir: str, url: str | None = None) -> dict[str, int]:
    """Usable paintings per artist of one data folder, as ingested (gone rows left out), label
    overrides applied."""
    from painting_ml.data.ingest import resolve_root

    with db.connect(url) as conn:
        rows = db.fetch_dicts(conn, db.sql("datasets", "artist_counts"), {"root": resolve_root(data_dir)})
    return {r["artist"]: int(r["n"]) for r in rows}


def select_artists(cfg: RunConfig, url: str | None = None) -> Selection:
    """Apply ``cfg.strategy`` to the usable paintings of the run's data folder (``cfg.data_dir``)."""
    return choose(usable_counts(cfg.data_dir, url), cfg)
