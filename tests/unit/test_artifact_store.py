"""The content-addressed artifact store: keys, de-duplication, refusal and corruption.

The checks that only need a blob's bytes run on a local folder and on an S3 bucket
(a moto server on 127.0.0.1); the exhaustive damage checks run on the folder only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from _s3 import s3_client, s3_server, s3_url  # noqa: F401  (fixtures)
from matinee.core.artifacts.hashing import content_key
from matinee.core.artifacts.store import ArtifactRef, ArtifactStore
from matinee.core.storage.blobs import BlobStore, LocalBlobStore, S3BlobStore
from matinee.errors import ArtifactError, CorruptArtifactError, NotFoundError


class Raw:
    """A stored blob's bytes, read and written behind the store's back."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def read(self, key: str) -> bytes:
        if isinstance(self.blobs, LocalBlobStore):
            return self.blobs.path(key).read_bytes()
        assert isinstance(self.blobs, S3BlobStore)
        return bytes(self.blobs.fs.cat_file(f"{self.blobs.bucket}/{self.blobs._key(key)}"))

    def write(self, key: str, data: bytes) -> None:
        if isinstance(self.blobs, LocalBlobStore):
            self.blobs.path(key).write_bytes(data)
            return
        assert isinstance(self.blobs, S3BlobStore)
        self.blobs.fs.call_s3("put_object", Bucket=self.blobs.bucket, Key=self.blobs._key(key), Body=data)

    def identity(self, key: str) -> Any:
        """Something that changes whenever the blob is written again."""
        if isinstance(self.blobs, LocalBlobStore):
            st = self.blobs.path(key).stat()
            return (st.st_ino, st.st_size)
        assert isinstance(self.blobs, S3BlobStore)
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        return id(s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(self.blobs.bucket, self.blobs._key(key)))


@pytest.fixture(params=["local", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
    else:
        yield S3BlobStore(request.getfixturevalue("s3_url"))


@pytest.fixture
def raw(blobs: BlobStore) -> Raw:
    return Raw(blobs)


@pytest.fixture
def store(blobs: BlobStore) -> ArtifactStore:
    return ArtifactStore(blobs)


@pytest.fixture
def local_blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "local-blobs")


@pytest.fixture
def local_store(local_blobs: LocalBlobStore) -> ArtifactStore:
    return ArtifactStore(local_blobs)


VALUES = {
    "int": lambda: 7,
    "str": lambda: "hello",
    "dict": lambda: {"a": [1, 2], "b": None},
    "npy": lambda: np.arange(24, dtype=np.float32).reshape(4, 6),
    "arrow-df": lambda: pd.DataFrame({"a": [1, 2, 3], "s": ["x", "y", "z"]}),
    "arrow-table": lambda: pa.table({"a": [1.5, None]}),
}


@pytest.mark.parametrize("name", VALUES)
def test_key_is_the_blake3_of_the_stored_bytes(store: ArtifactStore, raw: Raw, name: str) -> None:
    ref = store.save(VALUES[name]())
    data = raw.read(ref.key)
    assert ref.key == content_key(data)
    assert ref.size == len(data)


@pytest.mark.parametrize("name", VALUES)
def test_identical_values_are_stored_once(store: ArtifactStore, blobs: BlobStore, raw: Raw, name: str) -> None:
    first = store.save(VALUES[name]())
    before = raw.identity(first.key)
    second = store.save(VALUES[name]())  # an equal value, built again
    again = ArtifactStore(blobs).save(VALUES[name]())  # a fresh store over the same place
    assert first == second == again
    assert [i.key for i in blobs.list()] == [first.key]
    assert raw.identity(first.key) == before  # not even re-written


def test_saving_a_stored_value_refreshes_its_time(local_store: ArtifactStore, local_blobs: LocalBlobStore) -> None:
    ref = local_store.save([1, 2, 3])
    old = 1_000_000_000
    os.utime(local_blobs.path(ref.key), (old, old))
    assert ArtifactStore(local_blobs).save([1, 2, 3]) == ref
    assert local_blobs.path(ref.key).stat().st_mtime > old + 1000


def test_saving_a_stored_value_refreshes_its_time_on_s3(s3_url: str) -> None:  # noqa: F811
    from datetime import datetime, timedelta, timezone

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    blobs = S3BlobStore(s3_url)
    ref = ArtifactStore(blobs).save([1, 2, 3])
    stored = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(blobs.bucket, blobs._key(ref.key))
    stored.last_modified = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=30)
    [info] = blobs.list()
    assert info.mtime < time.time() - 86400
    assert ArtifactStore(blobs).save([1, 2, 3]) == ref  # a new process saving the same value
    [info] = blobs.list()
    assert info.mtime > time.time() - 60  # the claim's time: a gc running now keeps it


def test_different_values_get_different_keys(store: ArtifactStore, blobs: BlobStore) -> None:
    refs = {store.save(v) for v in (1, 2, "1", b"1", np.array([1]), np.array([1], dtype=np.int8), [1])}
    assert len({r.key for r in refs}) == 7
    assert len(list(blobs.list())) == 7


def test_an_array_and_its_fortran_copy_are_both_kept(store: ArtifactStore) -> None:
    c = np.arange(6).reshape(2, 3)
    f = np.asfortranarray(c)
    assert store.save(c).key != store.save(f).key
    assert store.load(store.save(f)).flags.f_contiguous


def test_raw_bytes_round_trip(store: ArtifactStore) -> None:
    ref = store.save_bytes(b"log line\n")
    assert ref == ArtifactRef(content_key(b"log line\n"), "bytes", 9)
    assert store.load_bytes(ref.key) == b"log line\n"


def test_refs_read_back_from_a_database_row_load(store: ArtifactStore) -> None:
    ref = store.save({"x": 1})
    assert store.load((ref.key, ref.codec, ref.size)) == {"x": 1}
    assert store.load(list(ref)) == {"x": 1}  # type: ignore[arg-type]


def _generator() -> Any:
    yield 1


@pytest.mark.parametrize(
    "make, type_name",
    [
        (lambda: (lambda x: x), "function"),
        (lambda: _generator(), "generator"),
        (lambda: threading.Lock(), "lock"),
    ],
    ids=["lambda", "generator", "lock"],
)
def test_unpicklable_values_raise_artifact_error_naming_type_and_fix(
    store: ArtifactStore, blobs: BlobStore, make: Any, type_name: str
) -> None:
    with pytest.raises(ArtifactError) as info:
        store.save(make())
    message = str(info.value)
    assert f"type {type_name}" in message
    assert "make it picklable" in message
    assert "local variable" in message
    assert list(blobs.list()) == []


def test_loading_a_missing_key_raises_not_found(store: ArtifactStore) -> None:
    with pytest.raises(NotFoundError, match="0" * 64):
        store.load(("0" * 64, "pickle", 1))


# -- corruption ------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUES)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_flipped_byte_raises_corrupt_artifact_error(
    store: ArtifactStore, raw: Raw, name: str, where: str
) -> None:
    ref = store.save(VALUES[name]())
    data = bytearray(raw.read(ref.key))
    data[{"first": 0, "middle": len(data) // 2, "last": len(data) - 1}[where]] ^= 0xFF
    raw.write(ref.key, bytes(data))
    with pytest.raises(CorruptArtifactError) as info:
        store.load(ref)
    assert info.value.key == ref.key  # type: ignore[attr-defined]
    assert ref.key in str(info.value)


@pytest.mark.parametrize("name", VALUES)
def test_a_truncated_blob_raises_corrupt_artifact_error(store: ArtifactStore, raw: Raw, name: str) -> None:
    ref = store.save(VALUES[name]())
    data = raw.read(ref.key)
    for length in sorted({0, 1, 5, 9, len(data) // 2, len(data) - 1} & set(range(len(data)))):
        raw.write(ref.key, data[:length])
        with pytest.raises(CorruptArtifactError):
            store.load(ref)


def test_any_damage_to_an_npy_blob_is_reported_as_corruption(
    local_store: ArtifactStore, local_blobs: LocalBlobStore
) -> None:
    """Every single-byte flip and every truncation, header included, is caught as corruption."""
    store, blobs = local_store, local_blobs
    array = np.arange(6, dtype=np.float64).reshape(2, 3)
    ref = store.save(array)
    path = blobs.path(ref.key)
    data = path.read_bytes()
    for position in range(len(data)):
        for mask in (0x01, 0xFF):
            damaged = bytearray(data)
            damaged[position] ^= mask
            path.write_bytes(bytes(damaged))
            with pytest.raises(CorruptArtifactError):
                store.load(ref)
    for length in range(len(data)):
        path.write_bytes(data[:length])
        with pytest.raises(CorruptArtifactError):
            store.load(ref)
    path.write_bytes(data)
    np.testing.assert_array_equal(store.load(ref), array)


def test_trailing_bytes_after_the_array_are_corruption(store: ArtifactStore, raw: Raw) -> None:
    ref = store.save(np.arange(4))
    raw.write(ref.key, raw.read(ref.key) + b"\x00")
    with pytest.raises(CorruptArtifactError):
        store.load(ref)


def test_corruption_is_caught_before_unpickling(store: ArtifactStore, raw: Raw) -> None:
    """A blob swapped for another valid pickle still fails: the hash is checked before loading."""
    ref = store.save({"model": "good"})
    other = store.save({"model": "evil"})
    raw.write(ref.key, raw.read(other.key))
    with pytest.raises(CorruptArtifactError, match="corrupt"):
        store.load(ref)


# -- large blobs ----------------------------------------------------------------------


def test_a_large_array_round_trips_and_is_verified(local_store: ArtifactStore, local_blobs: LocalBlobStore) -> None:
    """(A large array on S3, a multipart upload: see test_blobs.py.)"""
    store, blobs, raw = local_store, local_blobs, Raw(local_blobs)
    array = np.arange(5_000_000, dtype=np.float64)  # 40 MB
    ref = store.save(array)
    data = raw.read(ref.key)
    assert ref.size == len(data) > 40_000_000
    assert ref.key == content_key(data)
    assert store.save(array.copy()) == ref
    assert len(list(blobs.list())) == 1
    assert_equal = np.testing.assert_array_equal
    assert_equal(ArtifactStore(blobs).load(ref), array)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0x01
    raw.write(ref.key, bytes(damaged))
    with pytest.raises(CorruptArtifactError):
        store.load(ref)
    raw.write(ref.key, data[: len(data) - 4096])
    with pytest.raises(CorruptArtifactError):
        store.load(ref)
