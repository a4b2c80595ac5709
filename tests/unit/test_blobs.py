"""Blob stores: a local folder, an fsspec URL and an S3 bucket (a moto server on
127.0.0.1) pass the same checks; then what only S3 has: multipart uploads,
conditional writes, claim markers, and errors that name the setting to fix."""

from __future__ import annotations

import hashlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _s3 import s3_client, s3_server, s3_url  # noqa: F401  (fixtures)
from matinee.core.artifacts.store import ArtifactStore
from matinee.core.storage.blobs import (
    BlobStore,
    FsspecBlobStore,
    LocalBlobStore,
    S3BlobStore,
    open_blob_store,
)
from matinee.errors import ConfigError, NotFoundError, StorageError


def key_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "memory", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
        return
    if request.param == "s3":
        yield S3BlobStore(request.getfixturevalue("s3_url"))
        return
    store = FsspecBlobStore(f"memory://matinee-test-{uuid.uuid4().hex}/blobs")
    yield store
    if store.fs.exists(store.root):
        store.fs.rm(store.root, recursive=True)


def all_files(store: BlobStore) -> list[str]:
    """Every file under the store's root, temp files (or unfinished S3 uploads) included."""
    if isinstance(store, LocalBlobStore):
        return [os.path.join(d, f) for d, _, files in os.walk(store.root) for f in files]
    if isinstance(store, S3BlobStore):
        objects = store.fs.call_s3("list_objects_v2", Bucket=store.bucket).get("Contents", [])
        uploads = store.fs.call_s3("list_multipart_uploads", Bucket=store.bucket).get("Uploads", [])
        return [o["Key"] for o in objects] + [f"upload:{u['Key']}" for u in uploads]
    assert isinstance(store, FsspecBlobStore)
    return list(store.fs.find(store.root)) if store.fs.exists(store.root) else []


def test_an_empty_store_lists_nothing(blobs: BlobStore) -> None:
    assert list(blobs.list()) == []
    assert not blobs.exists(key_of(b"x"))


def test_put_exists_open_list_delete(blobs: BlobStore) -> None:
    data = {key_of(b): b for b in (b"alpha", b"", b"\x00" * 1000)}
    before = time.time() - 5
    for key, value in data.items():
        assert blobs.put(key, [value]) == len(value)
    for key, value in data.items():
        assert blobs.exists(key)
        with blobs.open(key) as fh:
            assert fh.read() == value
    listed = {info.key: info for info in blobs.list()}
    assert {k: i.size for k, i in listed.items()} == {k: len(v) for k, v in data.items()}
    assert all(info.mtime >= before for info in listed.values())
    gone = key_of(b"alpha")
    blobs.delete(gone)
    assert not blobs.exists(gone)
    assert gone not in {info.key for info in blobs.list()}
    assert len(list(blobs.list())) == 2


def test_put_joins_bytes_and_memoryview_chunks(blobs: BlobStore) -> None:
    array = np.arange(100, dtype=np.int64)
    chunks = [b"head:", memoryview(array).cast("B"), bytearray(b":tail")]
    data = b"head:" + array.tobytes() + b":tail"
    assert blobs.put(key_of(data), chunks) == len(data)  # type: ignore[arg-type]
    with blobs.open(key_of(data)) as fh:
        assert fh.read() == data


def test_put_again_under_the_same_key_keeps_one_blob(blobs: BlobStore) -> None:
    key = key_of(b"same")
    blobs.put(key, [b"same"])
    blobs.put(key, [b"same"])
    assert [(i.key, i.size) for i in blobs.list()] == [(key, 4)]


def test_open_a_missing_blob_raises_not_found_naming_the_key(blobs: BlobStore) -> None:
    key = key_of(b"never stored")
    with pytest.raises(NotFoundError, match=key) as info:
        blobs.open(key)
    assert info.value.key == key  # type: ignore[attr-defined]


def test_delete_a_missing_blob_is_a_no_op(blobs: BlobStore) -> None:
    blobs.delete(key_of(b"never stored"))
    assert list(blobs.list()) == []


def _chunks_that_fail(error: BaseException) -> Iterator[bytes]:
    yield b"first chunk "
    raise error


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=["OSError", "KeyboardInterrupt"])
def test_a_put_that_fails_midway_leaves_nothing_behind(blobs: BlobStore, error: BaseException) -> None:
    key = key_of(b"first chunk second chunk")
    with pytest.raises(type(error)):
        blobs.put(key, _chunks_that_fail(error))
    assert not blobs.exists(key)
    assert list(blobs.list()) == []
    assert all_files(blobs) == []  # no temp file either


def test_a_failed_put_over_an_existing_blob_keeps_the_old_bytes(blobs: BlobStore) -> None:
    key = key_of(b"first chunk good")
    blobs.put(key, [b"first chunk good"])
    with pytest.raises(OSError):
        blobs.put(key, _chunks_that_fail(OSError("disk full")))
    with blobs.open(key) as fh:
        assert fh.read() == b"first chunk good"
    assert len(all_files(blobs)) == 1


def test_artifacts_round_trip_on_every_blob_store(blobs: BlobStore) -> None:
    store = ArtifactStore(blobs)
    array = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    refs = [store.save(array), store.save({"a": 1}), store.save_bytes(b"log")]
    out = store.load(refs[0])
    np.testing.assert_array_equal(out, array)
    assert out.flags.f_contiguous
    assert store.load(refs[1]) == {"a": 1}
    assert store.load_bytes(refs[2].key) == b"log"
    assert {i.key: i.size for i in blobs.list()} == {r.key: r.size for r in refs}


def test_local_blobs_are_files_under_a_two_character_folder(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "b")
    key = key_of(b"x")
    store.put(key, [b"x"])
    assert (tmp_path / "b" / key[:2] / key).read_bytes() == b"x"


@pytest.mark.parametrize(
    "url, kind",
    [("relative/blobs", LocalBlobStore), ("/abs/blobs", LocalBlobStore), ("file:///abs/blobs", LocalBlobStore),
     ("memory://bucket/prefix", FsspecBlobStore)],
)
def test_open_blob_store_picks_the_backend_by_url(url: str, kind: type) -> None:
    assert isinstance(open_blob_store(url), kind)


def test_file_urls_and_paths_open_the_same_folder(tmp_path: Path) -> None:
    by_path = open_blob_store(str(tmp_path / "b"))
    by_url = open_blob_store(f"file://{tmp_path / 'b'}")
    by_path.put(key_of(b"x"), [b"x"])
    assert by_url.exists(key_of(b"x"))


def test_an_unknown_protocol_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="bogus.*MATINEE_BLOB_URL"):
        open_blob_store("bogus://somewhere")


@pytest.mark.parametrize("url", ["s3://bucket/prefix", "s3a://bucket"])
def test_s3_without_s3fs_names_the_extra_to_install(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)  # what an environment without it sees
    with pytest.raises(ConfigError, match=r"pip install 'matinee\[s3\]'"):
        open_blob_store(url)


def test_s3_urls_open_an_s3_store() -> None:
    pytest.importorskip("s3fs", reason="s3fs is not installed")
    store = open_blob_store("s3://bucket/some/prefix/")
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == ("bucket", "some/prefix")
    with pytest.raises(ConfigError, match="names no bucket.*MATINEE_ARTIFACT_URL"):
        open_blob_store("s3://")


# -- S3 only ---------------------------------------------------------------------


def backdate(store: S3BlobStore, s3_key: str, seconds: float) -> None:
    """Make an object in the test server look ``seconds`` old (S3 itself cannot)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    obj = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(store.bucket, s3_key)
    assert obj is not None, s3_key
    obj.last_modified = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=seconds)


@pytest.fixture
def s3(s3_url: str) -> S3BlobStore:  # noqa: F811
    return S3BlobStore(s3_url)


def head(store: S3BlobStore, key: str) -> dict[str, Any]:
    return store.fs.call_s3("head_object", Bucket=store.bucket, Key=store._key(key))  # type: ignore[no-any-return]


def test_s3_keys_are_prefix_then_two_characters_then_the_key(s3: S3BlobStore, s3_client: Any) -> None:  # noqa: F811
    key = key_of(b"x")
    s3.put(key, [b"x"])
    assert s3_client.cat_file(f"{s3.bucket}/blobs/{key[:2]}/{key}") == b"x"


def test_s3_a_large_blob_is_a_multipart_upload_and_round_trips(s3: S3BlobStore) -> None:
    data = np.random.default_rng(0).integers(0, 255, 20 * 2**20, dtype=np.uint8).tobytes()
    view = memoryview(data)
    chunks = [view[:1000], view[1000 : 3 * 2**20], view[3 * 2**20 :]]  # boundaries off the part size
    key = key_of(data)
    assert s3.put(key, chunks) == len(data)
    # 20 MiB in parts of 8 MiB: a multipart object, whose ETag ends in "-<number of parts>"
    assert head(s3, key)["ETag"].strip('"').endswith("-3")
    with s3.open(key) as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == key
    assert [(i.key, i.size) for i in s3.list()] == [(key, len(data))]


def test_s3_a_large_array_round_trips_through_the_artifact_store(s3: S3BlobStore) -> None:
    array = np.arange(3 * 2**20, dtype=np.float64)  # 24 MiB
    store = ArtifactStore(s3)
    ref = store.save(array)
    assert head(s3, ref.key)["ETag"].strip('"').endswith("-4")  # 24 MiB and a header
    np.testing.assert_array_equal(ArtifactStore(s3).load(ref), array)


def test_s3_a_failed_multipart_upload_is_aborted(s3: S3BlobStore) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"\0" * (9 * 2**20)  # one full part is uploaded...
        raise OSError("the producer broke")

    key = key_of(b"never complete")
    with pytest.raises(OSError, match="producer broke"):
        s3.put(key, chunks())
    assert all_files(s3) == []  # ...and the upload aborted, not left pending
    assert not s3.exists(key)


def test_s3_writes_are_conditional_so_a_stored_blob_is_never_replaced(s3: S3BlobStore) -> None:
    small, large = key_of(b"small"), key_of(b"large")
    s3.put(small, [b"small"])
    s3.put(large, [b"L" * (9 * 2**20)])
    before = {k: head(s3, k)["ETag"] for k in (small, large)}
    # another writer's (impossible, but visible) different bytes under the same keys
    assert s3.put(small, [b"other"]) == 5
    assert s3.put(large, [b"M" * (9 * 2**20)]) == 9 * 2**20
    assert {k: head(s3, k)["ETag"] for k in (small, large)} == before
    with s3.open(small) as fh:
        assert fh.read() == b"small"
    assert all_files(s3) and not [f for f in all_files(s3) if f.startswith("upload:")]


def test_s3_two_writers_racing_on_one_large_blob_leave_one_object_and_no_upload(s3: S3BlobStore) -> None:
    import threading

    data = b"R" * (9 * 2**20)  # two parts each
    key = key_of(data)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            barrier.wait()
            S3BlobStore(s3.url).put(key, [data])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all_files(s3) == [s3._key(key)]  # one object, both uploads finished or aborted
    with s3.open(key) as fh:
        assert fh.read() == data


def test_s3_falls_back_to_plain_writes_on_a_server_without_conditional_ones(
    s3: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    real = s3.fs.call_s3
    seen: list[bool] = []

    def call_s3(method: str, **kwargs: Any) -> Any:
        if method == "put_object" and "IfNoneMatch" in kwargs:
            seen.append(True)
            raise ClientError({"Error": {"Code": "NotImplemented", "Message": "If-None-Match"}}, method)
        return real(method, **kwargs)

    monkeypatch.setattr(s3.fs, "call_s3", call_s3)
    key = key_of(b"plain")
    s3.put(key, [b"plain"])
    s3.put(key_of(b"second"), [b"second"])
    assert seen == [True]  # asked once, then remembered
    with s3.open(key) as fh:
        assert fh.read() == b"plain"


def test_s3_claim_marks_a_blob_as_wanted_now_and_gc_listing_sees_it(s3: S3BlobStore) -> None:
    key = key_of(b"old")
    assert not s3.claim(key)  # not stored: nothing claimed, no marker
    assert all_files(s3) == []
    s3.put(key, [b"old"])
    backdate(s3, s3._key(key), 7200)
    [info] = s3.list()
    assert info.mtime < time.time() - 7000
    assert s3.claim(key)
    [info] = s3.list()
    assert (info.key, info.size) == (key, 3)
    assert info.mtime > time.time() - 60  # the claim's time, not the blob's
    s3.delete(key)
    assert all_files(s3) == []  # the blob and its marker


def test_s3_delete_many_removes_blobs_and_markers_in_batches(s3: S3BlobStore) -> None:
    keys = [key_of(str(i).encode()) for i in range(6)]
    for i, key in enumerate(keys):
        s3.put(key, [str(i).encode()])
        s3.claim(key)
    s3.delete_many(keys[:4] + [key_of(b"never stored")])
    assert sorted(i.key for i in s3.list()) == sorted(keys[4:])
    assert len(all_files(s3)) == 4


def test_s3_listing_skips_foreign_objects_and_pages_through_many(
    s3: S3BlobStore, s3_client: Any, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    s3_client.pipe_file(f"{s3.bucket}/blobs/README", b"not a blob")
    s3_client.pipe_file(f"{s3.bucket}/blobs/ab/cd/ef", b"not a blob")
    s3_client.pipe_file(f"{s3.bucket}/elsewhere/aa/aabb", b"outside the prefix")
    keys = {key_of(str(i).encode()) for i in range(7)}
    for key in keys:
        s3.put(key, [b""])
    monkeypatch.setattr(s3, "page_size", 2)  # 10 objects: five pages
    assert {i.key for i in s3.list()} == keys


def test_s3_a_store_used_before_a_fork_works_in_the_child(s3: S3BlobStore) -> None:
    s3.put(key_of(b"parent"), [b"parent"])
    pid = os.fork()
    if pid == 0:  # the child, as the process executor's workers are
        code = 1
        try:
            s3.put(key_of(b"child"), [b"child"])
            code = 0 if s3.exists(key_of(b"parent")) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert s3.exists(key_of(b"child"))


def test_s3_a_missing_bucket_names_the_bucket_and_the_setting(s3_server: str) -> None:  # noqa: F811
    store = S3BlobStore(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/blobs")
    key = key_of(b"x")
    for call in (lambda: store.put(key, [b"x"]), lambda: list(store.list()), lambda: store.open(key)):
        with pytest.raises(ConfigError, match=r"bucket 'no-such-bucket-\w+' does not exist at http://127\.0\.0\.1:\d+.*MATINEE_ARTIFACT_URL") as info:
            call()
        assert "\n" not in str(info.value)


def test_s3_refused_credentials_name_the_aws_settings(s3_url: str) -> None:  # noqa: F811
    from moto.core.authorization import enable_iam_authentication

    store = S3BlobStore(s3_url)
    with enable_iam_authentication():  # the server now checks keys, and knows none
        with pytest.raises(ConfigError, match=r"refused access to s3://.*InvalidAccessKeyId.*AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
            store.put(key_of(b"x"), [b"x"])
        for call in (lambda: list(store.list()), lambda: store.open(key_of(b"x")), lambda: store.exists(key_of(b"x"))):
            with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
                call()


def test_s3_missing_credentials_name_the_aws_settings(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    import s3fs

    store = S3BlobStore(s3_url)
    store._fs = s3fs.S3FileSystem(skip_instance_cache=True)
    store._pid = os.getpid()
    with pytest.raises(ConfigError, match="no AWS credentials for the blob store s3://.*AWS_ACCESS_KEY_ID"):
        store.exists(key_of(b"x"))


def test_s3_an_unreachable_endpoint_names_the_endpoint_setting(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import socket

    import s3fs

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = S3BlobStore("s3://bucket/blobs")
    store._fs = s3fs.S3FileSystem(skip_instance_cache=True)
    store._fs.retries = 1
    store._pid = os.getpid()
    with pytest.raises(StorageError, match=rf"cannot reach the S3 endpoint http://127.0.0.1:{port}/? for s3://bucket/blobs: check AWS_ENDPOINT_URL_S3"):
        store.exists(key_of(b"x"))
