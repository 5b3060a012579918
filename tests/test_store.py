"""The artifact store (painting_ml.core.store) on a local folder and on a real S3 API server (moto's
standalone server on 127.0.0.1, the one Airflow's Amazon provider tests use), through the same
interface: put, fetch, fetch_many, list, exists, delete, delete_prefix, key_of, check_key."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest

from painting_ml.core.store import ArtifactStore, StoreError, check_key, storage_options

pytestmark = pytest.mark.unit

BUCKET = "painting-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free 127.0.0.1 port with the bucket BUCKET; fake credentials."""
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore((tmp_path / "artifacts").as_uri(), tmp_path / "scratch")
    endpoint = request.getfixturevalue("s3_endpoint")
    # A prefix of its own per test, so the tests share the bucket without seeing each other's keys.
    return ArtifactStore(f"s3://{BUCKET}/{tmp_path.name}/store", tmp_path / "scratch", storage_options(endpoint))


def _other_host(store: ArtifactStore, tmp_path: Path, name: str) -> ArtifactStore:
    """The same store seen from another host (its own scratch folder)."""
    if store.is_local:
        return store
    return ArtifactStore(store.url, tmp_path / name, store._options)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "", "a//b", "./a", "a/./b", "a\\b", "..", "a/.."])
def test_check_key_rejects_keys_outside_the_store(key):
    with pytest.raises(ValueError, match="not a relative path inside the store"):
        check_key(key)


def test_check_key_accepts_relative_keys():
    assert check_key("runs/run_7_ab12cd34/model.keras") == "runs/run_7_ab12cd34/model.keras"
    assert check_key("runs/run_7/") == "runs/run_7"
    with pytest.raises(ValueError):
        ArtifactStore("/tmp/x", Path("/tmp/s")).local_path("../escape")


def test_put_fetch_list_exists(store, tmp_path):
    key = "runs/run_1_aa/model.keras"
    _write(store.local_path(key), b"model")  # written where the code writes, then put
    store.put(key)
    _write(tmp_path / "elsewhere.png", b"png!")
    store.put("runs/run_1_aa/mosaics/a b.png", tmp_path / "elsewhere.png")  # any file, parents made
    store.put("derived/d1/x.png", tmp_path / "elsewhere.png")

    assert store.exists(key) and not store.exists("runs/run_1_aa") and not store.exists("runs/nope.keras")
    assert store.list() == {key: 5, "runs/run_1_aa/mosaics/a b.png": 4, "derived/d1/x.png": 4}
    assert store.list("runs") == store.list("runs/") == {key: 5, "runs/run_1_aa/mosaics/a b.png": 4}
    assert store.list("runs/run_1_aa/mosaics") == {"runs/run_1_aa/mosaics/a b.png": 4}
    assert store.list("run") == {} and store.list("nothing/here") == {}  # folder keys, not string prefixes

    other = _other_host(store, tmp_path, "scratch-b")
    got = other.fetch(key)
    assert got == other.local_path(key) and got.read_bytes() == b"model"
    assert other.key_of(got) == key
    fetched = other.fetch_many(["derived/d1/x.png", key, "derived/d1/x.png"])
    assert [p.read_bytes() for p in fetched] == [b"png!", b"model", b"png!"]
    if not store.is_local:
        assert not store.local_path("derived/d1/x.png").exists()  # nothing copied to the writer's scratch
        assert sorted(p.name for p in (tmp_path / "scratch-b").rglob("*")  # no partial downloads left
                      if p.is_file()) == ["model.keras", "x.png"]
        assert store.uri(key) == f"{store.url}/{key}"
    else:
        assert store.uri(key) == str(tmp_path / "artifacts" / key)


def test_put_replaces_and_drops_a_stale_working_copy(store, tmp_path):
    key = "runs/run_2/classes.json"
    store.put(key, _write(tmp_path / "v1", b"one"))
    reader = _other_host(store, tmp_path, "scratch-r")
    assert reader.fetch(key).read_bytes() == b"one"
    reader.put(key, _write(tmp_path / "v2", b"two!"))
    assert reader.fetch(key).read_bytes() == b"two!" and store.list("runs") == {key: 4}


def test_fetch_of_a_missing_key_says_so_in_one_line(store, tmp_path):
    for fetch in (lambda: store.fetch("runs/run_9/model.keras"), lambda: store.fetch_many(["runs/run_9/model.keras"])):
        with pytest.raises(StoreError) as err:
            fetch()
        message = str(err.value)
        assert "\n" not in message and "runs/run_9/model.keras" in message and store.url in message
    if not store.is_local:
        assert not any(p.is_file() for p in (tmp_path / "scratch").rglob("*"))  # no empty or partial file left


def test_put_of_a_missing_file_is_a_store_error(store, tmp_path):
    with pytest.raises(StoreError, match="is not a file"):
        store.put("runs/x/model.keras", tmp_path / "absent")


def test_delete_and_delete_prefix(store, tmp_path):
    src = _write(tmp_path / "f", b"12")
    for key in ("runs/run_3/model.keras", "runs/run_3/plots/a.png", "runs/run_3/plots/b.png",
                "runs/run_30/model.keras"):
        store.put(key, src)
    reader = _other_host(store, tmp_path, "scratch-d")
    reader.fetch("runs/run_3/model.keras")
    reader.local_path("runs/run_3/empty-dir").mkdir(parents=True)  # a folder, not a key: left alone

    assert reader.delete(["runs/run_3/model.keras", "runs/none.keras", "runs/run_3/empty-dir"]) == 1
    assert not reader.local_path("runs/run_3/model.keras").exists()  # the working copy went too
    assert not store.exists("runs/run_3/model.keras")
    assert store.delete_prefix("runs/run_3") == 2
    assert store.list() == {"runs/run_30/model.keras": 2}  # run_30 shares the string prefix, not the folder
    assert not store.local_path("runs/run_3").exists()
    assert store.delete_prefix("runs/never") == 0


def test_key_of_rejects_paths_outside_the_store(store, tmp_path):
    assert store.key_of(store.local_path("a/b.txt")) == "a/b.txt"
    with pytest.raises(StoreError, match="not inside the artifact store"):
        store.key_of(tmp_path / "outside.txt")


def test_a_forked_child_gets_its_own_filesystem(s3_endpoint, tmp_path):
    """fsspec's s3fs refuses to run in a forked child; the store makes a new one there (an Airflow
    task process is forked from the process that may have made the store)."""
    store = ArtifactStore(f"s3://{BUCKET}/fork", tmp_path / "scratch", storage_options(s3_endpoint))
    store.put("k.txt", _write(tmp_path / "k", b"parent"))
    pid = os.fork()
    if pid == 0:  # the child: write a key, exit with the outcome
        try:
            store.put("child.txt", _write(tmp_path / "c", b"child"))
            os._exit(0 if store.exists("k.txt") else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.list() == {"k.txt": 6, "child.txt": 5}


def test_an_unknown_scheme_is_a_config_error(tmp_path):
    from painting_ml.core.errors import ConfigError

    with pytest.raises(ConfigError, match="no storage backend"):
        ArtifactStore("nosuchscheme://bucket/x", tmp_path)


def test_local_probes_of_several_processes_at_once_never_pull_a_folder_from_under_each_other(tmp_path):
    """Runs starting together each probe the store (``check``); no probe may fail because another
    probe cleaned up after itself, and the probes leave nothing behind."""
    from concurrent.futures import ThreadPoolExecutor

    store = ArtifactStore((tmp_path / "artifacts").as_uri(), tmp_path)

    def probe_often(_):
        for _ in range(200):
            store.check()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(probe_often, range(4)))
    assert list((tmp_path / "artifacts").iterdir()) == []
