"""The artifact store: one interface over a local folder or an object store (``s3://bucket/prefix``).

Everything a run produces or reads besides the data folder — models, class lists, derived and
augmented image copies, plots, mosaics, reports, serving exports — lives in the store under a
**key**, a relative POSIX path such as ``runs/run_7_1a2b3c4d/model.keras``. The database stores
keys, never host paths, so any host that can reach the store can read what another host wrote.

Code works on local files: :meth:`ArtifactStore.local_path` is where a key's file is on *this*
host. For the local store that is the store itself (no copies); for a remote store it is a
per-host scratch folder (``$PAINTING_HOME/scratch``), :meth:`put` uploads a finished file and
:meth:`fetch` downloads one that is not there yet. A local write goes through a temporary file
and a rename; an S3 upload is one PUT, which is atomic by itself.
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import shutil
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlparse

from painting_ml.core.errors import ConfigError, PaintingMLError

log = logging.getLogger(__name__)


class StoreError(PaintingMLError):
    """A key is missing from the store or cannot be read or written."""


def check_key(key: str) -> str:
    """``key`` if it is a clean relative POSIX path inside the store; raises ValueError otherwise."""
    norm = posixpath.normpath(key) if key else ""
    if not key or key.startswith("/") or norm != key.rstrip("/") or norm.startswith("..") or "\\" in key:
        raise ValueError(f"artifact key {key!r} is not a relative path inside the store")
    return norm


class ArtifactStore:
    """A local folder (``file://`` URL or plain path) or an fsspec object store (``s3://…``).

    Args:
        url: where the store is: ``file:///srv/painting/artifacts``, ``/srv/painting/artifacts``
            or ``s3://bucket/prefix``.
        scratch: this host's folder for working copies of a remote store's files.
        storage_options: passed to fsspec (e.g. ``{"client_kwargs": {"endpoint_url": …}}``).
    """

    def __init__(self, url: str, scratch: Path, storage_options: dict | None = None) -> None:
        parsed = urlparse(url)
        self.url = url.rstrip("/")
        self.is_local = parsed.scheme in ("", "file")
        if self.is_local:
            self.root = Path(parsed.path if parsed.scheme == "file" else url).expanduser().resolve()
            self._base = ""
        else:
            self._scheme = parsed.scheme
            # No listings cache: other hosts write keys at any time, and a long-lived process (the
            # api-server's results view) must not answer from a stale listing.
            self._options = {"use_listings_cache": False, **(storage_options or {})}
            self._fs_pid: int | None = None
            self._fs_obj = None
            self._fs  # noqa: B018 - fail at construction on a scheme fsspec has no backend for
            self._base = f"{parsed.netloc}{parsed.path}".rstrip("/")
            self.root = Path(scratch).expanduser().resolve()

    @property
    def _fs(self):
        """The fsspec filesystem, made again in a forked child: fsspec's async filesystems (s3fs)
        refuse to be used from a process other than the one that made them."""
        if self.is_local:
            return None
        if self._fs_pid != os.getpid():
            import fsspec

            try:
                self._fs_obj = fsspec.filesystem(self._scheme, skip_instance_cache=True, **self._options)
            except (ImportError, ValueError) as exc:
                raise ConfigError(f"PAINTING_ARTIFACTS_URL={self.url!r}: no storage backend for {self._scheme!r} "
                                  f"({exc}); use a local folder or s3://bucket/prefix") from None
            self._fs_pid = os.getpid()
        return self._fs_obj

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # --- keys and local files -------------------------------------------------------------------
    def local_path(self, key: str) -> Path:
        """Where ``key``'s file is (or will be written) on this host."""
        return self.root / check_key(key)

    def key_of(self, path: str | Path) -> str:
        """The key of a local file under :meth:`local_path`'s folder (the inverse of local_path)."""
        path = Path(path).resolve()
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            raise StoreError(f"{path} is not inside the artifact store's folder {self.root}; "
                             "write artifacts under ArtifactStore.local_path(key)") from None

    def uri(self, key: str) -> str:
        """The full address of ``key`` (a path for the local store, ``s3://…`` otherwise)."""
        return str(self.local_path(key)) if self.is_local else f"{self.url}/{check_key(key)}"

    def _remote(self, key: str) -> str:
        return f"{self._base}/{check_key(key)}"

    # --- moving files ---------------------------------------------------------------------------
    def put(self, key: str, local: str | Path | None = None) -> None:
        """Make ``key`` hold the file ``local`` (default: ``local_path(key)``, already written)."""
        src = Path(local) if local is not None else self.local_path(key)
        if self.is_local:
            dest = self.local_path(key)
            if src.resolve() != dest:
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dest)
            return
        if not src.is_file():
            raise StoreError(f"cannot store {key}: {src} is not a file")
        copy = self.local_path(key)
        if src.resolve() != copy and copy.is_file():
            copy.unlink()  # this host's working copy is older than what the key now holds
        try:
            self._fs.put_file(str(src), self._remote(key))
        except FileNotFoundError:
            raise StoreError(f"cannot write {key}: the bucket of the artifact store {self.url} does not exist") from None
        except OSError as exc:
            raise StoreError(f"cannot write {key} to the artifact store {self.url}: {_one_line(exc)}") from None

    def fetch(self, key: str) -> Path:
        """A local copy of ``key`` (downloaded once per host for a remote store); its path.

        Raises:
            StoreError: the key is not in the store (one line naming it and the store).
        """
        dest = self.local_path(key)
        if self.is_local:
            if not dest.is_file():
                raise StoreError(f"{key} is not in the artifact store {self.url}; it was deleted "
                                 "(painting-ml gc) or never written")
            return dest
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _part(dest)
        try:
            self._fs.get_file(self._remote(key), str(tmp))
            os.replace(tmp, dest)  # never a half-downloaded file under the key's name
        except FileNotFoundError:
            raise StoreError(f"{key} is not in the artifact store {self.url}; it was deleted "
                             "(painting-ml gc) or never written") from None
        except OSError as exc:
            raise StoreError(f"cannot read {key} from the artifact store {self.url}: {_one_line(exc)}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def fetch_many(self, keys: Iterable[str]) -> list[Path]:
        """:meth:`fetch` for many keys; remote misses are downloaded in one batched call."""
        keys = list(keys)
        if not self.is_local:
            missing = [k for k in dict.fromkeys(keys) if not self.local_path(k).is_file()]
            if missing:
                dests = [self.local_path(k) for k in missing]
                tmps = [_part(d) for d in dests]
                for d in dests:
                    d.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self._fs.get([self._remote(k) for k in missing], [str(t) for t in tmps])
                    for t, d in zip(tmps, dests):
                        os.replace(t, d)
                except FileNotFoundError:
                    gone = [k for k in missing if not self._fs.exists(self._remote(k))]
                    raise StoreError(f"{len(gone)} file(s) missing from the artifact store {self.url} (first: "
                                     f"{gone[0] if gone else '?'}); rerun the step that writes them (augment "
                                     "for image copies)") from None
                except OSError as exc:
                    raise StoreError(f"cannot read {len(missing)} file(s) from the artifact store {self.url}: "
                                     f"{_one_line(exc)}") from None
                finally:
                    for t in tmps:
                        t.unlink(missing_ok=True)
        return [self.fetch(k) for k in keys]

    # --- what is there ------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        if self.is_local:
            return self.local_path(key).is_file()
        return self._fs.isfile(self._remote(key))

    def presence(self, prefix: str) -> Callable[[str], bool]:
        """A cheap "is this key under ``prefix`` in the store?" for checking many keys: one
        listing of ``prefix`` for a remote store (not one request per key), a stat for the local one."""
        if self.is_local:
            return lambda key: self.local_path(key).is_file()
        listed = set(self.list(prefix))
        return listed.__contains__

    def modified(self, key: str) -> float:
        """When ``key`` was last written (POSIX seconds); FileNotFoundError when it is not there."""
        if self.is_local:
            return self.local_path(key).stat().st_mtime
        return self._fs.modified(self._remote(key)).timestamp()

    def list(self, prefix: str = "") -> dict[str, int]:
        """Every key under ``prefix`` (a folder key, or "" for everything) with its size in bytes."""
        out: dict[str, int] = {}
        if self.is_local:
            base = self.root / check_key(prefix) if prefix else self.root
            if base.is_dir():
                for dirpath, _, files in os.walk(base):
                    for name in files:
                        p = Path(dirpath) / name
                        out[p.relative_to(self.root).as_posix()] = p.stat().st_size
            return out
        base = self._remote(prefix) if prefix else self._base
        try:
            found = self._fs.find(base, detail=True)
        except FileNotFoundError:
            return out
        for path, info in found.items():
            out[path[len(self._base) + 1:]] = int(info.get("size") or 0)
        return out

    def delete(self, keys: Iterable[str]) -> int:
        """Delete ``keys`` (missing ones are skipped) here and in this host's scratch copies; the
        number of keys deleted."""
        keys = [check_key(k) for k in keys]
        n = 0
        if self.is_local:
            for k in keys:
                path = self.local_path(k)
                if path.is_file() or path.is_symlink():
                    path.unlink(missing_ok=True)
                    n += 1
            return n
        existing = [k for k in keys if self._fs.isfile(self._remote(k))]
        if existing:
            self._fs.rm([self._remote(k) for k in existing])
        for k in keys:
            path = self.local_path(k)
            if path.is_file() or path.is_symlink():
                path.unlink(missing_ok=True)
        return len(existing)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under the folder key ``prefix``; the number deleted."""
        keys = list(self.list(prefix))
        n = self.delete(keys)
        local = self.root / check_key(prefix)
        shutil.rmtree(local, ignore_errors=True)
        return n


def _part(dest: Path) -> Path:
    """A download's temporary name beside ``dest`` (renamed onto it when complete)."""
    return dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def storage_options(endpoint: str | None) -> dict:
    """fsspec options for the configured endpoint (credentials come from the AWS variables)."""
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}


@functools.lru_cache(maxsize=4)
def _store(url: str, scratch: str, endpoint: str | None) -> ArtifactStore:
    return ArtifactStore(url, Path(scratch), storage_options(endpoint))


def get_store() -> ArtifactStore:
    """The store named by the settings (``PAINTING_ARTIFACTS_URL``)."""
    from painting_ml.core.settings import get_settings

    s = get_settings()
    return _store(s.artifacts_url, str(s.scratch_dir), s.artifacts_endpoint)
