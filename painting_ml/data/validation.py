"""The data-quality gate: checks a dataset version before any GPU time is spent on it.

Three checks, each with a failing and a warning level taken from the run config, and two about
copies of one picture (:mod:`painting_ml.data.identity`):

``reject_rate``   share of the data folder's CSV rows its ingest rejected (missing, broken, unsafe files).
``split_counts``  paintings of each selected artist in train, val and test.
``drift``         against the previous accepted version of the same selection in the same data
                  folder: each artist's count, the share of artists replaced, the median image side.
``duplicates``    share of the version's paintings that are a second copy of another one (warning
                  above :data:`WARN_DUPLICATE_SHARE`).
``leakage``       groups of copies whose members sit in different splits: always a failure (the
                  split keeps groups whole, so any is a bug, never data).

The checks are pure functions of the figures; :func:`validate_dataset` is the thin database
edge: it measures, stores figures and findings in ``dataset_validations`` (the report shows them),
logs the warnings and raises :class:`DataQualityError` when a failing level is crossed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from painting_ml.core import db
from painting_ml.core.config import RunConfig
from painting_ml.core.errors import DataQualityError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: Share of a version's paintings that may be copies of another before the gate warns.
WARN_DUPLICATE_SHARE = 0.01
THRESHOLDS = ("max_reject_rate", "warn_reject_rate", "min_split_paintings", "warn_split_paintings", "max_drift",
              "warn_drift")


@dataclass(frozen=True)
class Finding:
    """One crossed level: ``failure`` stops the run, ``warning`` is logged and reported."""

    level: str
    check: str
    message: str


def _level(value: float, fail: float, warn: float, above: bool = True) -> str | None:
    def crossed(limit: float) -> bool:
        return value > limit if above else value < limit

    return "failure" if crossed(fail) else "warning" if crossed(warn) else None


def check_reject_rate(rejected: int, usable: int, cfg: RunConfig) -> list[Finding]:
    """The share of the folder's CSV rows rejected, against ``max_reject_rate`` / ``warn_reject_rate``."""
    total = rejected + usable
    rate = rejected / total if total else 0.0
    level = _level(rate, cfg.max_reject_rate, cfg.warn_reject_rate)
    if not level:
        return []
    limit = cfg.max_reject_rate if level == "failure" else cfg.warn_reject_rate
    return [Finding(level, "reject_rate", f"{rejected} of {total} CSV rows rejected ({rate:.1%} > {limit:.1%}); "
                                          "see `painting-ml sql rejects` — is the folder complete?")]


def check_split_counts(counts: dict[str, dict[str, int]], cfg: RunConfig) -> list[Finding]:
    """Each selected artist's paintings per split against ``min_split_paintings`` (failure) and
    ``warn_split_paintings`` (warning); one finding per level, naming every artist below it."""
    below: dict[str, list[str]] = {"failure": [], "warning": []}
    for artist in sorted(counts):
        for split in SPLITS:
            n = int(counts[artist].get(split, 0))
            level = _level(n, cfg.min_split_paintings, cfg.warn_split_paintings, above=False)
            if level:
                below[level].append(f"{artist} {split} {n}")
    limits = {"failure": cfg.min_split_paintings, "warning": cfg.warn_split_paintings}
    return [Finding(level, "split_counts", f"fewer than {limits[level]} paintings per split: {', '.join(items)}")
            for level, items in below.items() if items]


def measure_drift(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """How ``current`` figures moved from ``previous`` ones (both from :func:`measure`).

    Returns:
        ``count_change`` {artist: relative change of its total}, ``max_count_change``,
        ``artists_added``, ``artists_removed``, ``replaced_share`` (of the previous artists),
        ``median_side_change`` (relative; None when either side is unknown).
    """
    cur, prev = current["artist_totals"], previous["artist_totals"]
    common = sorted(set(cur) & set(prev))
    change = {a: abs(cur[a] - prev[a]) / prev[a] for a in common if prev[a]}
    added, removed = sorted(set(cur) - set(prev)), sorted(set(prev) - set(cur))
    side_now, side_before = current["image_side"].get("median"), previous["image_side"].get("median")
    return {
        "count_change": {a: round(v, 4) for a, v in change.items()},
        "max_count_change": round(max(change.values(), default=0.0), 4),
        "artists_added": added, "artists_removed": removed,
        "replaced_share": round(max(len(added), len(removed)) / max(len(prev), 1), 4),
        "median_side_change": (round(abs(side_now - side_before) / side_before, 4)
                               if side_now and side_before else None),
    }


def check_drift(drift: dict[str, Any], cfg: RunConfig) -> list[Finding]:
    """Each drift measure against ``max_drift`` (failure) and ``warn_drift`` (warning), each
    reported once, at the worst level it reaches."""
    out: list[Finding] = []
    by_level: dict[str, list[str]] = {}
    for artist, v in sorted(drift["count_change"].items()):
        if level := _level(v, cfg.max_drift, cfg.warn_drift):
            by_level.setdefault(level, []).append(f"{artist} {v:.0%}")
    for level, moved in by_level.items():
        limit = cfg.max_drift if level == "failure" else cfg.warn_drift
        out.append(Finding(level, "drift", f"artist counts moved more than {limit:.0%}: {', '.join(moved)}"))
    share = drift["replaced_share"]
    if level := _level(share, cfg.max_drift, cfg.warn_drift):
        out.append(Finding(level, "drift", f"{share:.0%} of the artists replaced (added {drift['artists_added']}, "
                                           f"removed {drift['artists_removed']})"))
    side = drift["median_side_change"]
    if side is not None and (level := _level(side, cfg.max_drift, cfg.warn_drift)):
        out.append(Finding(level, "drift", f"median image side moved {side:.0%}"))
    return out


def check_duplicates(copies: int, total: int) -> list[Finding]:
    """A warning when more than :data:`WARN_DUPLICATE_SHARE` of ``total`` paintings are ``copies``
    (members of a group beyond its first)."""
    share = copies / total if total else 0.0
    if share <= WARN_DUPLICATE_SHARE:
        return []
    return [Finding("warning", "duplicates", f"{copies} of {total} paintings ({share:.1%} > "
                                              f"{WARN_DUPLICATE_SHARE:.0%}) are copies of another painting of the "
                                              "version (see the duplicate_groups view)")]


def check_leakage(straddling: list[str]) -> list[Finding]:
    """A failure naming the groups (by key) whose members sit in more than one split."""
    if not straddling:
        return []
    return [Finding("failure", "leakage", f"{len(straddling)} group(s) of copies straddle splits "
                                          f"(e.g. {', '.join(sorted(straddling)[:3])})")]


def measure_groups(conn: db.Connection, version_id: int) -> dict[str, Any]:
    """The version's copies: members beyond each group's first, and the groups across splits."""
    splits: dict[str, set[str]] = {}
    members: dict[str, int] = {}
    for r in db.fetch_dicts(conn, db.sql("identity", "version_groups"), {"id": version_id}):
        splits.setdefault(r["group_key"], set()).add(r["split"])
        members[r["group_key"]] = members.get(r["group_key"], 0) + 1
    excluded = db.fetch_one(conn, db.sql("identity", "version_excluded"), {"id": version_id})
    return {"copies": sum(n - 1 for n in members.values()),
            "straddling": sorted(k for k, s in splits.items() if len(s) > 1),
            "excluded_conflicting_groups": int(excluded["n"]) if excluded else 0}


def measure(conn: db.Connection, version_id: int, root: str) -> dict[str, Any]:
    """The figures of one dataset version, and the reject counts of its data folder ``root``."""
    found = db.fetch_one(conn, db.sql("validation", "version_counts"), {"id": version_id})
    if not found:
        raise LookupError(f"dataset version {version_id} does not exist")
    rejects = db.fetch_one(conn, db.sql("validation", "reject_counts"), {"root": root}, required=True)
    sides = db.fetch_one(conn, db.sql("validation", "image_sides"), {"id": version_id}, required=True)
    counts = {a: {s: int(found["artist_counts"].get(a, {}).get(s, 0)) for s in SPLITS} for a in found["artists"]}
    rejected, usable = int(rejects["rejected"]), int(rejects["usable"])
    return {
        "rejected": rejected, "usable": usable,
        "reject_rate": round(rejected / (rejected + usable), 4) if rejected + usable else 0.0,
        "split_counts": counts,
        "artist_totals": {a: sum(c.values()) for a, c in counts.items()},
        "image_side": {k: (float(sides[k]) if sides[k] is not None else None) for k in ("p10", "median", "p90")},
    }


def validate_dataset(cfg: RunConfig, version_id: int, url: str | None = None) -> dict[str, Any]:
    """Run the gate on ``version_id``; store and return its figures and findings.

    Returns:
        ``{"validation_id", "version_id", "status", "previous_version_id", "findings": [...]}``.

    Raises:
        DataQualityError: a failing level was crossed (the row is stored first, status ``failed``).
    """
    root = str(Path(cfg.data_dir).expanduser().resolve())
    with db.connect(url) as conn:
        figures = measure(conn, version_id, root)
        previous = db.fetch_one(conn, db.sql("validation", "previous_accepted"),
                                {"selection": cfg.selection_hash(), "root": root, "id": version_id})
        findings = check_reject_rate(figures["rejected"], figures["usable"], cfg)
        findings += check_split_counts(figures["split_counts"], cfg)
        figures["duplicates"] = measure_groups(conn, version_id)
        findings += check_duplicates(figures["duplicates"]["copies"], sum(figures["artist_totals"].values()))
        findings += check_leakage(figures["duplicates"]["straddling"])
        if previous:
            figures["drift"] = measure_drift(figures, previous["figures"])
            findings += check_drift(figures["drift"], cfg)
        levels = {f.level for f in findings}
        status = "failed" if "failure" in levels else "warning" if levels else "ok"
        row = db.fetch_one(conn, db.sql("validation", "insert_validation"), {
            "version": version_id, "root": root, "selection": cfg.selection_hash(),
            "previous": previous["version_id"] if previous else None, "status": status,
            "figures": Jsonb(figures), "findings": Jsonb([asdict(f) for f in findings]),
            "thresholds": Jsonb({k: getattr(cfg, k) for k in THRESHOLDS}),
        }, required=True)
    for f in findings:
        if f.level == "warning":
            log.warning("data-quality warning (%s) on dataset version %d: %s", f.check, version_id, f.message)
    if status == "failed":
        failures = "; ".join(f"{f.check}: {f.message}" for f in findings if f.level == "failure")
        raise DataQualityError(
            f"data-quality gate failed on dataset version {version_id} ({cfg.data_dir}): {failures} — fix the data or "
            "adjust max_reject_rate / min_split_paintings / max_drift")
    log.info("data-quality gate %s on dataset version %d (%d paintings, reject rate %.1f%%)", status, version_id,
             sum(figures["artist_totals"].values()), 100 * figures["reject_rate"])
    return {"validation_id": int(row["id"]), "version_id": version_id, "status": status,
            "previous_version_id": previous["version_id"] if previous else None,
            "findings": [asdict(f) for f in findings]}
