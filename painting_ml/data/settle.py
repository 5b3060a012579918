"""Is a data folder still being written? Two scans a quiet period apart must agree.

A half-copied Kaggle folder (``rsync`` or ``cp`` still running, an upload in progress) must not be
ingested: it would publish the catalog Asset and start a full retrain on a fraction of the data.
:func:`folder_settled` looks at every file's size and modification/change time; when nothing was
touched within the quiet period it answers at once, otherwise it waits out the period and scans
again, and the folder counts as settled only when the two scans are identical.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from painting_ml.data.ingest.scan import walk


class FileTimes(NamedTuple):
    """What a scan records of one file: any write changes at least one of these."""

    size: int
    mtime_ns: int
    ctime_ns: int


def scan(data_dir: str | Path) -> dict[str, FileTimes]:
    """``{relative path: FileTimes}`` of every file under ``data_dir``.

    ctime is included because copy tools that preserve modification times (``cp -p``,
    ``rsync -t``) cannot preserve it: a file written a second ago has a fresh ctime. A folder
    that cannot be listed is left out: the folder is changing, and the second scan tells.

    Args:
        data_dir: the data folder.

    Returns:
        Every file by its path relative to ``data_dir``.
    """
    out: dict[str, FileTimes] = {}
    for folder in walk(str(data_dir), skip_unreadable=True):
        for name in folder.files():
            try:
                st = os.stat(folder.path_of(name))
            except FileNotFoundError:  # removed between listing and stat: the folder is changing
                continue
            out[folder.rel(name)] = FileTimes(st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return out


def folder_settled(data_dir: str | Path, quiet_seconds: float, *, now: Callable[[], float] = time.time,
                   sleep: Callable[[float], None] = time.sleep) -> tuple[bool, str]:
    """Whether ``data_dir`` has been left alone for ``quiet_seconds``.

    Args:
        data_dir: the data folder.
        quiet_seconds: how long nothing in it may have changed (0 or less: the check is off).
        now: the clock (seconds since the epoch, as file times are).
        sleep: waits out the quiet period between the two scans.

    Returns:
        ``(True, why)`` when settled; ``(False, what changed)`` when files changed between the
        two scans. A missing folder is "settled" (the ingest reports it as missing).
    """
    root = Path(data_dir)
    if quiet_seconds <= 0 or not root.is_dir():
        return True, "quiet-period check off" if quiet_seconds <= 0 else f"{root} does not exist"
    first = scan(root)
    newest = max((max(t.mtime_ns, t.ctime_ns) for t in first.values()), default=0) / 1e9
    if now() - newest >= quiet_seconds:
        return True, f"nothing under {root} changed in the last {quiet_seconds:g} s"
    sleep(quiet_seconds)
    second = scan(root)
    changed = sorted(k for k in set(first) | set(second) if first.get(k) != second.get(k))
    if not changed:
        return True, f"{len(second)} files under {root} unchanged over {quiet_seconds:g} s"
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return False, (f"{root} is still being written: {len(changed)} files changed within {quiet_seconds:g} s "
                   f"({shown}); not ingesting until it settles")
