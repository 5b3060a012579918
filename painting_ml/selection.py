"""Choose which artists to train on, counting usable paintings (the metadata over-states them)."""

from __future__ import annotations

from dataclasses import dataclass

from painting_ml import db
from painting_ml.config import RunConfig
from painting_ml.exceptions import SelectionError


@dataclass(frozen=True)
class Selection:
    """The chosen artists (ordered: the index is the class id) and the per-artist count."""

    artists: list[str]
    per_artist: int
    available: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return {"artists": self.artists, "per_artist": self.per_artist, "available": self.available}

    @classmethod
    def from_dict(cls, d: dict) -> Selection:
        return cls(list(d["artists"]), int(d["per_artist"]), dict(d["available"]))


def choose_top(counts: dict[str, int], n: int, min_per_artist: int) -> Selection:
    """Top ``n`` artists by usable paintings (ties by name), equalised to the smallest of them.

    Args:
        counts: usable paintings per artist.
        n: artists wanted.
        min_per_artist: artists below this count are never chosen.

    Raises:
        SelectionError: fewer than ``n`` artists qualify; the message lists what exists.
    """
    eligible = sorted(((c, a) for a, c in counts.items() if c >= min_per_artist), key=lambda t: (-t[0], t[1]))
    if len(eligible) < n:
        shown = ", ".join(f"{a} ({c})" for c, a in eligible[:20]) or "none"
        raise SelectionError(
            f"asked for {n} artists with at least {min_per_artist} usable paintings, but only "
            f"{len(eligible)} qualify: {shown}; lower n_artists or min_per_artist, or ingest more data"
        )
    chosen = eligible[:n]
    artists = sorted(a for _, a in chosen)
    return Selection(artists=artists, per_artist=min(c for c, _ in chosen),
                     available={a: c for c, a in chosen})


def usable_counts(url: str | None = None) -> dict[str, int]:
    """Usable paintings per artist, as ingested."""
    with db.connect(url) as conn:
        return dict(conn.execute(db.sql("datasets", "artist_counts")).fetchall())


def select_artists(cfg: RunConfig, url: str | None = None) -> Selection:
    """Apply ``cfg.strategy`` to the usable paintings in the database."""
    counts = usable_counts(url)
    if not counts:
        raise SelectionError("no usable paintings in the database; run `painting-ml ingest` first")
    return choose_top(counts, cfg.n_artists, cfg.min_per_artist)
