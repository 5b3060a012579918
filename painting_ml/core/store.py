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

import contextlib
import functools
import logging
import os
import posixpath
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from painting_ml.core.errors import ConfigError, PaintingMLError

log = logging.getLogger(__name__)


class StoreError(PaintingMLError):
    """A key is missing from the store, or the store cannot be reached, read or written: one line
    naming the store's URL (credentials hidden) and the fix."""


#: The URL schemes a store may use: a local folder or an S3 API (AWS, MinIO, Ceph, moto).
SCHEMES = ("", "file", "s3")
#: Error codes of an S3 API that mean "these credentials may not do this".
_REFUSED = {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
            "InvalidToken", "TokenRefreshRequired", "AccountProblem", "403", "Forbidden"}


class _FileSystem(Protocol):
    """The part of an fsspec filesystem the store uses (fsspec ships no type hints)."""

    def put_file(self, lpath: str, rpath: str) -> None: ...

    def get_file(self, rpath: str, lpath: str) -> None: ...

    def get(self, rpath: list[str], lpath: list[str]) -> None: ...

    def pipe_file(self, path: str, value: bytes) -> None: ...

    def cat_file(self, path: str) -> bytes: ...

    def rm_file(self, path: str) -> None: ...

    def exists(self, path: str) -> bool: ...

    def isfile(self, path: str) -> bool: ...

    def modified(self, path: str) -> datetime: ...

    def find(self, path: str, *, detail: bool) -> dict[str, dict[str, Any]]: ...

    def rm(self, path: list[str]) -> None: ...


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

    def __init__(self, url: str, scratch: Path, storage_options: dict[str, Any] | None = None) -> None:
        parsed = urlparse(url)
        self.url = url.rstrip("/")
        #: The URL as messages show it: credentials written into it are hidden.
        self.shown = redact(self.url)
        self.endpoint: str | None = ((storage_options or {}).get("client_kwargs") or {}).get("endpoint_url")
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
            self._fs_obj: _FileSystem | None = None
            self._filesystem()  # fail at construction on a scheme fsspec has no backend for
            self._base = f"{parsed.netloc}{parsed.path}".rstrip("/")
            self.root = Path(scratch).expanduser().resolve()

    @property
    def _fs(self) -> _FileSystem:
        return self._filesystem()

    def _filesystem(self) -> _FileSystem:
        """The fsspec filesystem of a remote store, made again in a forked child: fsspec's async
        filesystems (s3fs) refuse to be used from a process other than the one that made them."""
        if self._fs_obj is None or self._fs_pid != os.getpid():
            import fsspec

            try:
                fs: _FileSystem = fsspec.filesystem(self._scheme, skip_instance_cache=True, **self._options)
            except (ImportError, ValueError, TypeError) as exc:
                raise ConfigError(f"PAINTING_ARTIFACTS_URL={self.shown!r}: no storage backend for {self._scheme!r} "
                                  f"({_one_line(exc)}); use a local folder or s3://bucket/prefix") from None
            self._fs_obj, self._fs_pid = fs, os.getpid()
            return fs
        return self._fs_obj

    def __repr__(self) -> str:
        return f"ArtifactStore({self.shown!r})"

    # --- is it usable? ------------------------------------------------------------------------------
    def check(self) -> None:
        """Prove the store usable before any work starts: one small object written, read back and
        deleted (credentials, endpoint, bucket, write and delete permission all in one go).

        Raises:
            StoreError: one line naming the store and the fix.
        """
        name = f"_probe/{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.txt"
        data = b"painting-ml store check\n"
        if self.is_local:
            # In the store's own folder, which nothing removes: a probe folder one process removes
            # after its probe could vanish under another process's probe being written.
            path = self.root / name.replace("/", "-")
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                ok = path.read_bytes() == data
                path.unlink()
            except OSError as exc:
                raise StoreError(f"the artifact store {self.root} is not a writable folder ({exc.strerror or exc}): "
                                 "fix PAINTING_ARTIFACTS_URL (or PAINTING_HOME) or the folder's permissions") from None
        else:
            with self._failures("write, read back and delete a probe object in"):
                self._fs.pipe_file(self._remote(name), data)
                ok = self._fs.cat_file(self._remote(name)) == data
                self._fs.rm_file(self._remote(name))
        if not ok:
            raise StoreError(f"the artifact store {self.shown} returned other bytes than were written to {name}; "
                             "check the endpoint (PAINTING_ARTIFACTS_ENDPOINT) is an S3 API")

    @contextlib.contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        """Turn what the object store's client raises (botocore, s3fs, aiohttp) into one StoreError line."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            if not _is_client_failure(exc):
                raise  # a bug, not the store: keep the traceback
            log.info("artifact store %s: cannot %s it", self.shown, doing, exc_info=True)  # shown with -v
            raise StoreError(describe_failure(exc, self.shown, self.endpoint, doing)) from None

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
        if not src.is_file():
            raise StoreError(f"cannot store {key}: {src} is not a file")
        if self.is_local:
            dest = self.local_path(key)
            if src.resolve() != dest:
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dest)
            return
        copy = self.local_path(key)
        if src.resolve() != copy and copy.is_file():
            copy.unlink()  # this host's working copy is older than what the key now holds
        with self._failures(f"write {key} to"):
            self._fs.put_file(str(src), self._remote(key))

    def fetch(self, key: str) -> Path:
        """A local copy of ``key`` (downloaded once per host for a remote store); its path.

        Raises:
            StoreError: the key is not in the store (one line naming it and the store).
        """
        dest = self.local_path(key)
        if self.is_local:
            if not dest.is_file():
                raise StoreError(f"{key} is not in the artifact store {self.shown}; it was deleted "
                                 "(painting-ml gc) or never written")
            return dest
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _part(dest)
        try:
            with self._failures(f"read {key} from"):
                try:
                    self._fs.get_file(self._remote(key), str(tmp))
                except FileNotFoundError as exc:
                    if _code(exc) != "NoSuchBucket":
                        raise StoreError(f"{key} is not in the artifact store {self.shown}; it was deleted "
                                         "(painting-ml gc) or never written") from None
                    raise
            os.replace(tmp, dest)  # never a half-downloaded file under the key's name
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
                    with self._failures(f"read {len(missing)} file(s) from"):
                        try:
                            self._fs.get([self._remote(k) for k in missing], [str(t) for t in tmps])
                        except FileNotFoundError as exc:
                            if _code(exc) == "NoSuchBucket":
                                raise
                            gone = [k for k in missing if not self._fs.exists(self._remote(k))]
                            raise StoreError(f"{len(gone)} file(s) missing from the artifact store {self.shown} "
                                             f"(first: {gone[0] if gone else '?'}); rerun the step that writes them "
                                             "(augment for image copies)") from None
                    for t, d in zip(tmps, dests, strict=True):
                        os.replace(t, d)
                finally:
                    for t in tmps:
                        t.unlink(missing_ok=True)
        return [self.fetch(k) for k in keys]

    # --- what is there ------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        if self.is_local:
            return self.local_path(key).is_file()
        with self._failures(f"look for {key} in"):
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
        try:
            with self._failures(f"read the time of {key} in"):
                return self._fs.modified(self._remote(key)).timestamp()
        except StoreError as exc:
            if isinstance(exc.__context__, FileNotFoundError) and _code(exc.__context__) != "NoSuchBucket":
                raise FileNotFoundError(key) from None
            raise

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
        remote_base = self._remote(prefix) if prefix else self._base
        with self._failures(f"list {prefix or 'the keys'} in"):
            try:
                found = self._fs.find(remote_base, detail=True)
            except FileNotFoundError as exc:
                if _code(exc) == "NoSuchBucket":  # a missing bucket is not an empty store
                    raise
                found = {}
            if not found and not self._fs.exists(self._base.split("/", 1)[0]):
                raise FileNotFoundError("NoSuchBucket")
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
        with self._failures(f"delete {len(keys)} key(s) from"):
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


def redact(url: str) -> str:
    """``url`` with any credentials written into it (``s3://key:secret@bucket``) shown as ``***``."""
    parsed = urlparse(url)
    if "@" not in parsed.netloc:
        return url
    return parsed._replace(netloc="***@" + parsed.netloc.rsplit("@", 1)[1]).geturl()


def _code(exc: BaseException | None) -> str | None:
    """The S3 API's error code behind ``exc`` (s3fs keeps botocore's ClientError as the cause)."""
    seen = 0
    while exc is not None and seen < 4:
        response = getattr(exc, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):
            return str(response["Error"]["Code"])
        if str(exc) == "NoSuchBucket" or "specified bucket does not exist" in str(exc):
            return "NoSuchBucket"
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _is_client_failure(exc: BaseException) -> bool:
    """Whether ``exc`` comes from talking to the object store (not a bug of ours)."""
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, (OSError, ValueError)) or module in ("botocore", "aiobotocore", "aiohttp", "s3fs",
                                                                  "urllib3")


def describe_failure(exc: BaseException, url: str, endpoint: str | None, doing: str) -> str:
    """One line for a failure of the object store's client: what went wrong with which store, and
    the fix. ``url`` is already redacted."""
    from botocore import exceptions as bx

    where = f"the artifact store {url}" + (f" (endpoint {endpoint})" if endpoint else "")
    code = _code(exc)
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
        return (f"no credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
                "or give the host an instance profile")
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ConnectionError)) \
            or type(exc).__module__.startswith("aiohttp"):
        return (f"cannot reach {where}: is the object store up and PAINTING_ARTIFACTS_ENDPOINT right? "
                f"({_one_line(exc)[:120]})")
    if code == "NoSuchBucket":
        bucket = urlparse(url).netloc.rsplit("@", 1)[-1]
        return (f"the bucket {bucket!r} of {where} does not exist: create it (e.g. `aws s3 mb s3://{bucket}`) or "
                "fix PAINTING_ARTIFACTS_URL")
    if code in _REFUSED or isinstance(exc, PermissionError):
        return (f"{where} would not let these credentials {doing} it ({code or _one_line(exc)[:80]}): check "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and that they may read, write and delete in the bucket")
    if isinstance(exc, ValueError) and "endpoint" in str(exc).lower():
        return (f"PAINTING_ARTIFACTS_ENDPOINT={endpoint!r} is not a usable URL ({_one_line(exc)[:80]}): write "
                "http(s)://host:port, e.g. http://minio:9000")
    return f"cannot {doing} {where}: {_one_line(exc)}"


def storage_options(endpoint: str | None) -> dict[str, Any]:
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


def check_store() -> ArtifactStore:
    """The store named by the settings, proven usable (:meth:`ArtifactStore.check`) once per
    process: what ``check_config`` and every ``painting-ml`` command that uses the store call first.

    Raises:
        StoreError: one line naming the store (credentials hidden) and the fix.
    """
    store = get_store()
    if (store.url, os.getpid()) not in _CHECKED:
        store.check()
        _CHECKED.add((store.url, os.getpid()))
    return store


_CHECKED: set[tuple[str, int]] = set()
