"""A data folder on disk: one walk of its tree, the fingerprint that says whether anything in it
changed, and where each image the CSV names lies.

:func:`walk` is the one traversal of a data folder; the ingest's scan and the quiet-period check
of :mod:`painting_ml.data.settle` both use it. Symlinked folders are listed but never entered, and
a symlink is followed only while its target stays inside the data folder (:func:`escapes`).
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from painting_ml.core.errors import DataError

# Kaggle's image folders; each may also be nested in itself (train_1/train_1/).
IMAGE_DIRS: tuple[str, ...] = ("train", *(f"train_{i}" for i in range(1, 10)), "test")
# The files whose (path, size, mtime) make up the fingerprint: the CSVs and anything an image may be.
FINGERPRINTED_SUFFIXES = (".csv", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")


def resolve_root(data_dir: str | Path) -> str:
    """The key of a data folder in the catalog: its absolute, symlink-free path as text."""
    return str(Path(data_dir).expanduser().resolve())


class Folder(NamedTuple):
    """One folder as :func:`walk` lists it. One record per folder, its entries as plain names:
    the listing of a 100k-file folder stays a few objects for the garbage collector to visit."""

    path: str
    rel_path: str  # relative to the walked root; "." for the root
    names: list[str]  # every entry, folders included, by name
    links: frozenset[str]  # the entries that are symlinks
    dirs: frozenset[str]  # the entries that are folders, or links to folders

    def rel(self, name: str) -> str:
        """The path of entry ``name`` relative to the walked root."""
        return self.rel_prefix + name

    def path_of(self, name: str) -> str:
        """Where entry ``name`` is, as a path usable for ``os.stat``."""
        return f"{self.path}{os.sep}{name}"  # not os.path.join: its checks run in Python, once per file

    @property
    def rel_prefix(self) -> str:
        """What :meth:`rel` puts before a name (a hot loop adds it itself)."""
        return "" if self.rel_path == "." else f"{self.rel_path}{os.sep}"

    def files(self) -> Iterator[str]:
        """The names of the entries that are not folders (nor links to folders)."""
        return (name for name in self.names if name not in self.dirs)


def list_folder(path: str, rel_path: str) -> Folder:
    """One folder's entries, by name; ``rel_path`` is the folder's path relative to the root."""
    with os.scandir(path) as it:
        items = sorted(it, key=lambda e: e.name)
    links, dirs = set(), set()
    for item in items:
        if item.is_symlink():
            links.add(item.name)
        try:
            if item.is_dir():
                dirs.add(item.name)
        except OSError:
            pass  # unreadable: taken as a file, which a stat then reports
    return Folder(path, rel_path, [item.name for item in items], frozenset(links), frozenset(dirs))


def walk(root: str, *, skip_unreadable: bool = False) -> Iterator[Folder]:
    """Every folder under ``root``, ``root`` first: each folder before its sub-folders, both by
    name; symlinked folders are listed as entries but not entered.

    Args:
        root: the folder to walk.
        skip_unreadable: a folder that cannot be listed (gone meanwhile, no permission) is left
            out instead of raising ``OSError``, as ``os.walk`` does.
    """
    try:
        folder = list_folder(root, ".")
    except OSError:
        if skip_unreadable:
            return
        raise
    yield from _walk_below(folder, skip_unreadable)


def _walk_below(folder: Folder, skip_unreadable: bool) -> Iterator[Folder]:
    yield folder
    for name in folder.names:
        if name not in folder.dirs or name in folder.links:
            continue
        try:
            sub = list_folder(folder.path_of(name), folder.rel(name))
        except OSError:
            if skip_unreadable:
                continue
            raise
        yield from _walk_below(sub, skip_unreadable)


class FileStat(NamedTuple):
    """What the scan records of a file: enough to tell that it changed."""

    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FolderScan:
    """One pass over a data folder: what the fingerprint, the incremental plan and the image index
    need, so the 100k-file folder is listed and stat'ed once.

    Attributes:
        fingerprint: sha256 over (relative path, size, mtime) of every CSV and image file.
        files: how many files that covers.
        stats: ``{relative path: FileStat}`` of those files.
        listing: ``{relative folder: Folder}`` of every folder reached without following a
            symlink.
    """

    fingerprint: str
    files: int
    stats: dict[str, FileStat]
    listing: dict[str, Folder]


def scan_folder(data_dir: str | Path) -> FolderScan:
    """Scan ``data_dir`` (see :class:`FolderScan`) in :func:`walk`'s order.

    Raises:
        DataError: the folder does not exist.
    """
    root = Path(resolve_root(data_dir))
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; set data_dir (or PAINTING_DATA_DIR) "
                        "to the folder that holds all_data_info.csv")
    lines: list[str] = []
    stats: dict[str, FileStat] = {}
    listing: dict[str, Folder] = {}
    for folder in walk(str(root)):
        listing[folder.rel_path] = folder
        path, rel_prefix = f"{folder.path}{os.sep}", folder.rel_prefix
        for name in folder.files():
            if not name.lower().endswith(FINGERPRINTED_SUFFIXES):
                continue
            try:
                st = os.stat(path + name)
            except OSError:
                continue
            rel = rel_prefix + name
            stats[rel] = FileStat(st.st_size, st.st_mtime_ns)
            lines.append(f"{rel}\x1f{st.st_size}\x1f{st.st_mtime_ns}")
    h = hashlib.sha256("\x1e".join(lines).encode("utf-8", "surrogateescape"))
    return FolderScan(h.hexdigest(), len(lines), stats, listing)


def scan_fingerprint(data_dir: str | Path) -> tuple[str, int]:
    """A hash of every CSV and image file under the data folder (relative path, size, mtime) and
    the file count: it changes when a file is added, removed, replaced or touched.

    Returns:
        ``(fingerprint, files)``.
    """
    scan = scan_folder(data_dir)
    return scan.fingerprint, scan.files


def index_images(data_dir: Path, links: set[str] | None = None,
                 listing: dict[str, Folder] | None = None) -> dict[str, list[str]]:
    """Map image file name -> every path relative to ``data_dir`` it has in the Kaggle image
    folders (more than one: the name is ambiguous and its row is rejected). Names are keyed in
    Unicode NFC, as the CSV's are read, while the paths stay as they are on disk: a name written
    in NFD (macOS) finds its file on every platform.

    Args:
        data_dir: the data folder (resolved).
        links: receives the relative paths a symlink leads to or through (an entry that is a
            link, or one in a folder reached by a link): only those can escape the data folder,
            so only those need resolving (resolving all 100k paths of the real set takes seconds).
        listing: the folders as :func:`scan_folder` listed them, so they are not listed twice.
    """
    index: dict[str, list[str]] = {}
    real_root = os.path.realpath(data_dir)
    for name in IMAGE_DIRS:
        for folder in (data_dir / name, data_dir / name / name):
            if not folder.is_dir():
                continue
            rel_folder = os.path.relpath(folder, data_dir)
            linked = os.path.realpath(folder) != os.path.join(real_root, rel_folder)
            if listing is not None and not linked and rel_folder in listing:
                found = listing[rel_folder]
            else:
                found = list_folder(str(folder), rel_folder)
            rel_prefix = found.rel_prefix
            for entry in found.names:
                rel = rel_prefix + entry
                paths = index.setdefault(unicodedata.normalize("NFC", entry), [])
                if rel not in paths:
                    paths.append(rel)
                if links is not None and (linked or entry in found.links):
                    links.add(rel)
    return index


def escapes(data_dir: Path, rel: str) -> str | None:
    """Where ``rel`` really leads when a symlink on the way points outside ``data_dir``, else None."""
    root = os.path.realpath(data_dir)
    target = os.path.realpath(data_dir / rel)
    return None if target.startswith(root + os.sep) else target
