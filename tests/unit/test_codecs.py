"""Artifact codecs: which codec a value gets, and that every value reads back unchanged."""

from __future__ import annotations

import datetime
import decimal
import fractions
import hashlib
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from matinee.core.artifacts import codecs
from matinee.core.artifacts.store import ArtifactStore
from matinee.core.storage.blobs import LocalBlobStore


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(LocalBlobStore(tmp_path / "blobs"))


def blob_path(store: ArtifactStore, key: str) -> Path:
    return store.blobs.path(key)  # type: ignore[attr-defined,no-any-return]


def assert_same_array(out: Any, expected: np.ndarray) -> None:
    assert type(out) is np.ndarray
    assert out.dtype == expected.dtype
    assert out.shape == expected.shape
    assert out.tobytes() == expected.tobytes()  # bit for bit: NaN, NaT and -0.0 included


# -- which codec ---------------------------------------------------------------


@pytest.mark.parametrize(
    "make, codec",
    [
        (lambda: 42, "pickle"),
        (lambda: "text", "pickle"),
        (lambda: {"a": [1, 2]}, "pickle"),
        (lambda: np.arange(3), "npy"),
        (lambda: np.array([1, "x", None], dtype=object), "pickle"),
        (lambda: np.ma.masked_array([1, 2], mask=[0, 1]), "pickle"),
        (lambda: np.float64(1.5), "pickle"),
        (lambda: pd.DataFrame({"a": [1, 2]}), "arrow-df"),
        (lambda: pd.DataFrame({"a": [1, "x", 2.5]}), "pickle"),
        (lambda: pd.Series([1, 2]), "pickle"),
        (lambda: pa.table({"a": [1, 2]}), "arrow-table"),
    ],
    ids=["int", "str", "dict", "ndarray", "object-ndarray", "masked", "numpy-scalar", "frame",
         "mixed-frame", "series", "arrow-table"],
)
def test_codec_is_chosen_by_type(make: Any, codec: str) -> None:
    assert codecs.encode(make())[0] == codec


def test_npy_chunks_are_the_arrays_own_memory() -> None:
    array = np.arange(1000, dtype=np.float64)
    codec, chunks = codecs.encode(array)
    assert codec == "npy"
    assert np.shares_memory(np.frombuffer(chunks[-1], dtype=np.uint8), array)


def test_decode_feeds_every_byte_to_the_hasher() -> None:
    for value in (np.arange(10).reshape(2, 5), {"k": "v"}, pd.DataFrame({"a": [1.0]})):
        codec, chunks = codecs.encode(value)
        data = b"".join(bytes(c) for c in chunks)
        hasher = hashlib.sha256()
        codecs.decode(codec, io.BytesIO(data), hasher)
        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_plain_values_do_not_import_numpy_pandas_or_pyarrow() -> None:
    code = (
        "import hashlib, io, sys\n"
        "from matinee.core.artifacts import codecs\n"
        "codec, chunks = codecs.encode({'a': [1, 2.5, 'x']})\n"
        "value = codecs.decode(codec, io.BytesIO(b''.join(chunks)), hashlib.sha256())\n"
        "assert value.fn() == {'a': [1, 2.5, 'x']}\n"
        "print(sorted(m for m in ('numpy', 'pandas', 'pyarrow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- plain Python values -----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [0, -1, 2**100, 3.25, "", "naïve ☃", b"\x00\xff", None, True, [1, [2, [3]]], (1, "a"),
     {"a": 1, "b": {"c": [1.5, None]}}, {1, 2}, frozenset({"x"}), range(3), decimal.Decimal("1.10"),
     datetime.datetime(2024, 1, 2, 3, 4, 5)],
    ids=repr,
)
def test_plain_values_round_trip(store: ArtifactStore, value: Any) -> None:
    out = store.load(store.save(value))
    assert out == value
    assert type(out) is type(value)


picklable = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
    | st.complex_numbers(allow_nan=False) | st.decimals(allow_nan=False) | st.fractions()
    | st.datetimes() | st.dates(),
    lambda inner: st.lists(inner, max_size=4)
    | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
    | st.frozensets(st.integers() | st.text(max_size=5), max_size=4),
    max_leaves=12,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=picklable)
def test_any_picklable_value_round_trips(store: ArtifactStore, value: Any) -> None:
    ref = store.save(value)
    assert ref.codec == "pickle"
    out = store.load(ref)
    assert out == value
    assert type(out) is type(value)
    assert store.save(value).key == ref.key


def test_fractions_and_nested_containers_keep_their_types(store: ArtifactStore) -> None:
    value = {"ratio": fractions.Fraction(1, 3), "pairs": [(1, 2)], "tags": frozenset({"a"})}
    out = store.load(store.save(value))
    assert type(out["ratio"]) is fractions.Fraction
    assert type(out["pairs"][0]) is tuple
    assert type(out["tags"]) is frozenset


# -- numpy ------------------------------------------------------------------------

ARRAYS = {
    "bool": lambda: np.array([True, False, True]),
    "int8": lambda: np.arange(-5, 5, dtype=np.int8),
    "uint64": lambda: np.array([0, 2**64 - 1], dtype=np.uint64),
    "float16": lambda: np.array([0.5, -0.0, np.inf], dtype=np.float16),
    "float64-nan": lambda: np.array([np.nan, 1.0, -np.inf]),
    "complex128": lambda: (np.arange(6) * (1 + 2j)).reshape(2, 3),
    "complex64": lambda: np.array([1j, -1 - 1j], dtype=np.complex64),
    "datetime64": lambda: np.array(["2024-01-01T00:00", "NaT", "1970-01-01"], dtype="datetime64[ns]"),
    "timedelta64": lambda: np.array([1, -2, "NaT"], dtype="timedelta64[s]"),
    "bytes": lambda: np.array([b"ab", b"c"]),
    "unicode": lambda: np.array(["naïve", "☃", ""]),
    "structured": lambda: np.array([(1, 2.5, b"ab"), (-3, np.nan, b"")],
                                   dtype=[("a", "<i4"), ("b", "<f8"), ("c", "S2")]),
    "structured-aligned": lambda: np.zeros(3, dtype=np.dtype([("a", "u1"), ("b", "<i8")], align=True)),
    "structured-nested": lambda: np.ones(2, dtype=[("p", [("x", "<i2"), ("y", ">f4")]), ("v", "<i4", (3,))]),
    "void": lambda: np.frombuffer(b"abcdef", dtype="V3").copy(),
    "0-d": lambda: np.array(3.5),
    "0-d-structured": lambda: np.array((1, 2.0), dtype=[("a", "i4"), ("b", "f8")]),
    "empty": lambda: np.empty((0, 3)),
    "empty-fortran": lambda: np.empty((4, 0), order="F"),
    "fortran": lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "fortran-3d": lambda: np.asfortranarray(np.arange(24, dtype=np.int16).reshape(2, 3, 4)),
    "strided-slice": lambda: np.arange(40).reshape(5, 8)[::2, 1::3],
    "reversed": lambda: np.arange(10)[::-1],
    "transposed-view": lambda: np.arange(6).reshape(2, 3).T[:, :1],
    "big-endian": lambda: np.arange(5, dtype=">i4"),
    "big-endian-float-fortran": lambda: np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3)),
}


@pytest.mark.parametrize("name", ARRAYS)
def test_arrays_round_trip(store: ArtifactStore, name: str) -> None:
    array = ARRAYS[name]()
    ref = store.save(array)
    assert ref.codec == "npy"
    out = store.load(ref)
    assert_same_array(out, array)
    if array.flags.f_contiguous and not array.flags.c_contiguous:
        assert out.flags.f_contiguous


@pytest.mark.parametrize("name", ARRAYS)
def test_stored_npy_blob_opens_with_numpy_load(store: ArtifactStore, name: str) -> None:
    array = ARRAYS[name]()
    ref = store.save(array)
    assert_same_array(np.load(blob_path(store, ref.key), allow_pickle=False), array)


def test_a_memmap_is_stored_as_its_data(store: ArtifactStore, tmp_path: Path) -> None:
    mm = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=np.int32, shape=(4, 5))
    mm[:] = np.arange(20).reshape(4, 5)
    ref = store.save(mm)
    assert ref.codec == "npy"
    assert_same_array(store.load(ref), np.arange(20, dtype=np.int32).reshape(4, 5))


scalar_dtypes = (
    hnp.boolean_dtypes()
    | hnp.integer_dtypes(endianness="?")
    | hnp.unsigned_integer_dtypes(endianness="?")
    | hnp.floating_dtypes(endianness="?")
    | hnp.complex_number_dtypes(endianness="?")
    | hnp.datetime64_dtypes(endianness="?")
    | hnp.timedelta64_dtypes(endianness="?")
    | hnp.byte_string_dtypes(endianness="?", max_len=4)
    | hnp.unicode_string_dtypes(endianness="?", max_len=4)
)
any_dtype = scalar_dtypes | hnp.array_dtypes(scalar_dtypes, max_size=3, allow_subarrays=True)


def _layout(array: np.ndarray, layout: str) -> np.ndarray:
    if layout == "fortran":
        return np.asfortranarray(array)
    if layout == "strided" and array.ndim:
        return array[(slice(None, None, 2),) * array.ndim]
    if layout == "reversed" and array.ndim:
        return array[::-1]
    return array


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    array=hnp.arrays(any_dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    layout=st.sampled_from(["c", "fortran", "strided", "reversed"]),
)
def test_any_array_round_trips_bit_for_bit(store: ArtifactStore, array: np.ndarray, layout: str) -> None:
    array = _layout(array, layout)
    ref = store.save(array)
    assert_same_array(store.load(ref), array)
    if _latin1(array.dtype):
        assert ref.codec == "npy"
        assert_same_array(np.load(blob_path(store, ref.key), allow_pickle=False), array)
    else:  # an .npy 2.0 header is latin-1: such field names are pickled instead
        assert ref.codec == "pickle"


def _latin1(dtype: np.dtype) -> bool:
    try:
        repr(np.lib.format.dtype_to_descr(dtype)).encode("latin1")
    except UnicodeEncodeError:
        return False
    return True


def test_field_names_beyond_latin1_round_trip(store: ArtifactStore) -> None:
    array = np.zeros(2, dtype=[("Ā", "<i4"), ("☃", "?")])
    assert_same_array(store.load(store.save(array)), array)


# -- pandas and Arrow -----------------------------------------------------------

FRAMES = {
    "named-index": (lambda: pd.DataFrame({"a": [1, 2], "b": [0.5, None]}, index=pd.Index(["x", "y"], name="key")),
                    "arrow-df"),
    "range-index": (lambda: pd.DataFrame({"a": [1, 2, 3]}, index=pd.RangeIndex(10, 16, 2)), "arrow-df"),
    "multi-index": (lambda: pd.DataFrame({"a": [1, 2]}, index=pd.MultiIndex.from_tuples([(1, "a"), (2, "b")],
                                                                                       names=["i", "j"])),
                    "arrow-df"),
    "multi-columns": (lambda: pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")])),
                      "pickle"),
    "int-column-names": (lambda: pd.DataFrame({0: [1.0], 1: [2.0]}), "pickle"),
    "int-and-str-labels": (lambda: pd.DataFrame({1: [1.0], "1": [2.0]}), "pickle"),
    "categorical": (lambda: pd.DataFrame({"c": pd.Categorical(["a", "b", "a"], categories=["b", "a"], ordered=True)}),
                    "arrow-df"),
    "datetime-tz": (lambda: pd.DataFrame({"t": pd.date_range("2024-03-30", periods=3, freq="D", tz="Europe/Amsterdam"),
                                          "d": pd.to_timedelta([1, 2, 3], unit="s")}), "arrow-df"),
    "datetime-tz-index": (lambda: pd.DataFrame({"a": [1]}, index=pd.DatetimeIndex(["2024-01-01"], tz="UTC", name="t")),
                          "arrow-df"),
    "nullable": (lambda: pd.DataFrame({"i": pd.array([1, None], dtype="Int64"),
                                       "s": pd.array(["x", None], dtype="string"),
                                       "b": pd.array([True, None], dtype="boolean")}), "arrow-df"),
    "numeric-dtypes": (lambda: pd.DataFrame({"f": np.array([1, 2], dtype=np.float32),
                                             "u": np.array([1, 2], dtype=np.uint16)}), "arrow-df"),
    "bytes-objects": (lambda: pd.DataFrame({"b": [b"x", b"y"]}), "pickle"),
    "empty": (lambda: pd.DataFrame(), "arrow-df"),
    "mixed-object": (lambda: pd.DataFrame({"m": [1, "x", 2.5]}), "pickle"),
    "duplicate-columns": (lambda: pd.DataFrame([[1, 2]], columns=["a", "a"]), "pickle"),
    "list-objects": (lambda: pd.DataFrame({"l": [[1, 2], [3]]}), "pickle"),
    "dict-objects": (lambda: pd.DataFrame({"d": [{"a": 1}, {"b": 2}]}), "pickle"),
    "int-objects": (lambda: pd.DataFrame({"a": pd.Series([1, None], dtype=object)}), "pickle"),
    "object-index": (lambda: pd.DataFrame({"a": [1, 2]}, index=pd.Index([1, "y"], dtype=object)), "pickle"),
}


@pytest.mark.parametrize("name", FRAMES)
def test_data_frames_round_trip(store: ArtifactStore, name: str) -> None:
    make, codec = FRAMES[name]
    frame = make()
    ref = store.save(frame)
    assert ref.codec == codec
    out = store.load(ref)
    pd.testing.assert_frame_equal(out, frame, check_exact=True, check_index_type=True)
    for column in range(frame.shape[1]):
        if frame.dtypes.iloc[column].kind == "O":  # element types too: a list must not come back as an array
            assert [type(v) for v in out.iloc[:, column]] == [type(v) for v in frame.iloc[:, column]]


def test_arrow_tables_round_trip_with_schema_metadata(store: ArtifactStore) -> None:
    table = pa.table({"a": pa.array([1, None], pa.int32()), "s": ["x", None],
                      "l": pa.array([[1.0], []], pa.list_(pa.float64()))}).replace_schema_metadata({"source": "t"})
    ref = store.save(table)
    assert ref.codec == "arrow-table"
    out = store.load(ref)
    assert isinstance(out, pa.Table)
    assert out.equals(table, check_metadata=True)
    with pa.ipc.open_stream(pa.OSFile(str(blob_path(store, ref.key)))) as reader:  # a plain Arrow IPC stream
        assert reader.read_all().equals(table)
