"""The content-addressed artifact store: keys, de-duplication, refusal and corruption."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from matinee.core.artifacts.hashing import content_key
from matinee.core.artifacts.store import ArtifactRef, ArtifactStore
from matinee.core.storage.blobs import LocalBlobStore
from matinee.errors import ArtifactError, CorruptArtifactError, NotFoundError


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def store(blobs: LocalBlobStore) -> ArtifactStore:
    return ArtifactStore(blobs)


VALUES = {
    "int": lambda: 7,
    "str": lambda: "hello",
    "dict": lambda: {"a": [1, 2], "b": None},
    "npy": lambda: np.arange(24, dtype=np.float32).reshape(4, 6),
    "arrow-df": lambda: pd.DataFrame({"a": [1, 2, 3], "s": ["x", "y", "z"]}),
    "arrow-table": lambda: pa.table({"a": [1.5, None]}),
}


@pytest.mark.parametrize("name", VALUES)
def test_key_is_the_blake3_of_the_stored_bytes(store: ArtifactStore, blobs: LocalBlobStore, name: str) -> None:
    ref = store.save(VALUES[name]())
    data = blobs.path(ref.key).read_bytes()
    assert ref.key == content_key(data)
    assert ref.size == len(data)


@pytest.mark.parametrize("name", VALUES)
def test_identical_values_are_stored_once(store: ArtifactStore, blobs: LocalBlobStore, name: str) -> None:
    first = store.save(VALUES[name]())
    stat = blobs.path(first.key).stat()
    second = store.save(VALUES[name]())  # an equal value, built again
    again = ArtifactStore(blobs).save(VALUES[name]())  # a fresh store over the same folder
    assert first == second == again
    assert len(list(blobs.list())) == 1
    after = blobs.path(first.key).stat()
    assert (after.st_ino, after.st_size) == (stat.st_ino, stat.st_size)  # not even re-written
    # ...but its time is refreshed, so a gc running now treats it as new (see the next test)
    assert after.st_mtime_ns >= stat.st_mtime_ns


def test_saving_a_stored_value_refreshes_its_time(store: ArtifactStore, blobs: LocalBlobStore) -> None:
    import os

    ref = store.save([1, 2, 3])
    old = 1_000_000_000
    os.utime(blobs.path(ref.key), (old, old))
    assert ArtifactStore(blobs).save([1, 2, 3]) == ref
    assert blobs.path(ref.key).stat().st_mtime > old + 1000


def test_different_values_get_different_keys(store: ArtifactStore, blobs: LocalBlobStore) -> None:
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
    store: ArtifactStore, blobs: LocalBlobStore, make: Any, type_name: str
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


def _flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", VALUES)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_flipped_byte_raises_corrupt_artifact_error(
    store: ArtifactStore, blobs: LocalBlobStore, name: str, where: str
) -> None:
    ref = store.save(VALUES[name]())
    path = blobs.path(ref.key)
    size = path.stat().st_size
    _flip(path, {"first": 0, "middle": size // 2, "last": size - 1}[where])
    with pytest.raises(CorruptArtifactError) as info:
        store.load(ref)
    assert info.value.key == ref.key  # type: ignore[attr-defined]
    assert ref.key in str(info.value)


@pytest.mark.parametrize("name", VALUES)
def test_a_truncated_blob_raises_corrupt_artifact_error(
    store: ArtifactStore, blobs: LocalBlobStore, name: str
) -> None:
    ref = store.save(VALUES[name]())
    path = blobs.path(ref.key)
    data = path.read_bytes()
    for length in sorted({0, 1, 5, 9, len(data) // 2, len(data) - 1} & set(range(len(data)))):
        path.write_bytes(data[:length])
        with pytest.raises(CorruptArtifactError):
            store.load(ref)


def test_any_damage_to_an_npy_blob_is_reported_as_corruption(store: ArtifactStore, blobs: LocalBlobStore) -> None:
    """Every single-byte flip and every truncation, header included, is caught as corruption."""
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


def test_trailing_bytes_after_the_array_are_corruption(store: ArtifactStore, blobs: LocalBlobStore) -> None:
    ref = store.save(np.arange(4))
    path = blobs.path(ref.key)
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(CorruptArtifactError):
        store.load(ref)


def test_corruption_is_caught_before_unpickling(store: ArtifactStore, blobs: LocalBlobStore) -> None:
    """A blob swapped for another valid pickle still fails: the hash is checked before loading."""
    ref = store.save({"model": "good"})
    other = store.save({"model": "evil"})
    blobs.path(ref.key).write_bytes(blobs.path(other.key).read_bytes())
    with pytest.raises(CorruptArtifactError, match="corrupt"):
        store.load(ref)


# -- large blobs ----------------------------------------------------------------------


def test_a_large_array_round_trips_and_is_verified(store: ArtifactStore, blobs: LocalBlobStore) -> None:
    array = np.arange(5_000_000, dtype=np.float64)  # 40 MB
    ref = store.save(array)
    path = blobs.path(ref.key)
    data = path.read_bytes()
    assert ref.size == len(data) > 40_000_000
    assert ref.key == content_key(data)
    assert store.save(array.copy()) == ref
    assert len(list(blobs.list())) == 1
    assert_equal = np.testing.assert_array_equal
    assert_equal(store.load(ref), array)
    assert_equal(np.load(path), array)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(CorruptArtifactError):
        store.load(ref)
    path.write_bytes(data[: len(data) - 4096])
    with pytest.raises(CorruptArtifactError):
        store.load(ref)
