"""Blob stores: a local folder and any fsspec URL pass the same checks."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from matinee.core.artifacts.store import ArtifactStore
from matinee.core.storage.blobs import BlobStore, FsspecBlobStore, LocalBlobStore, open_blob_store
from matinee.errors import ConfigError, NotFoundError


def key_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "memory"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
        return
    store = FsspecBlobStore(f"memory://matinee-test-{uuid.uuid4().hex}/blobs")
    yield store
    if store.fs.exists(store.root):
        store.fs.rm(store.root, recursive=True)


def all_files(store: BlobStore) -> list[str]:
    """Every file under the store's root, temp files included."""
    if isinstance(store, LocalBlobStore):
        return [os.path.join(d, f) for d, _, files in os.walk(store.root) for f in files]
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


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_s3_without_s3fs_names_the_extra_to_install() -> None:
    with pytest.raises(ConfigError, match=r"pip install 'matinee\[s3\]'"):
        open_blob_store("s3://bucket/prefix")
