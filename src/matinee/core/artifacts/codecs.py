"""Artifact codecs: how a Python value becomes bytes and back.

``npy``
    numpy arrays of any non-object dtype, in the ``.npy`` format: a small header,
    then the array's own memory, written without a copy and read straight into
    a freshly allocated array. A stored blob opens with ``numpy.load`` as it is.
``arrow-df`` / ``arrow-table``
    pandas DataFrames and Arrow tables, as an Arrow IPC stream. A DataFrame
    that Arrow would not read back exactly (object columns, non-string or
    repeated column labels, an index frequency) is pickled instead.
``pickle``
    everything else, with pickle protocol 5.

numpy, pandas and pyarrow are imported only when a value of theirs is seen.
"""

from __future__ import annotations

import io
import pickle
import sys
from typing import IO, Any

Chunks = list[bytes | memoryview]

#: Bytes read or hashed at a time when decoding a large array.
CHUNK = 16 * 1024 * 1024


def encode(value: Any) -> tuple[str, Chunks]:
    """Encode ``value``; returns the codec name and the byte chunks (not copied)."""
    np = sys.modules.get("numpy")
    if np is not None and type(value) in (np.ndarray, np.memmap) and not value.dtype.hasobject:
        try:
            return "npy", _encode_npy(np, value)
        except UnicodeEncodeError:  # field names beyond latin-1 need .npy 3.0: pickle those
            pass
    module = type(value).__module__
    if module.startswith("pandas") and type(value).__name__ == "DataFrame" and _arrow_exact(value):
        chunks = _encode_arrow(value, from_pandas=True)
        if chunks is not None:
            return "arrow-df", chunks
    elif module.startswith("pyarrow") and type(value).__name__ == "Table":
        chunks = _encode_arrow(value, from_pandas=False)
        if chunks is not None:
            return "arrow-table", chunks
    return "pickle", [pickle.dumps(value, protocol=5)]


def _encode_npy(np: Any, array: Any) -> Chunks:
    if array.flags.c_contiguous:
        flat = array
    elif array.flags.f_contiguous:
        flat = array.T
    else:
        array = flat = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(header, np.lib.format.header_data_from_array_1_0(array))
    data = memoryview(flat.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
    return [header.getvalue(), data]


def _encode_arrow(value: Any, from_pandas: bool) -> Chunks | None:
    import pyarrow as pa

    try:
        table = pa.Table.from_pandas(value, preserve_index=None) if from_pandas else value
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    except (pa.ArrowException, TypeError, ValueError):
        return None  # mixed-type object columns and the like: pickle them instead
    return [memoryview(sink.getvalue())]


def _arrow_exact(frame: Any) -> bool:
    """Whether a DataFrame reads back from Arrow exactly; if not, it is pickled.

    Arrow is used for frames with unique string column labels and no ``object``
    columns (lists would come back as arrays, mixed ints as int64, an object
    column of strings as ``str``) and no index frequency (Arrow drops it).
    """
    columns = frame.columns
    if getattr(columns, "nlevels", 1) != 1 or not columns.is_unique:
        return False
    if not all(isinstance(label, str) for label in columns):
        return False
    if any(str(dtype) == "object" for dtype in frame.dtypes):
        return False
    return getattr(frame.index, "freq", None) is None


def decode(codec: str, fh: IO[bytes], hasher: Any) -> Any:
    """Read one encoded value from ``fh``, feeding every byte read to ``hasher``."""
    if codec == "npy":
        return _decode_npy(fh, hasher)
    data = fh.read()
    hasher.update(data)
    if codec == "pickle":
        return Deferred(lambda: pickle.loads(data))
    if codec == "bytes":
        return data
    if codec in ("arrow-df", "arrow-table"):
        import pyarrow as pa

        def read() -> Any:
            table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
            return table.to_pandas() if codec == "arrow-df" else table

        return Deferred(read)
    raise ValueError(f"unknown artifact codec {codec!r}")


def _decode_npy(fh: IO[bytes], hasher: Any) -> Any:
    import numpy as np

    magic = fh.read(8)  # b"\x93NUMPY" + major + minor version
    if len(magic) < 8 or not magic.startswith(b"\x93NUMPY"):
        raise ValueError("not an .npy blob")
    length_bytes = fh.read(2 if magic[6] == 1 else 4)
    header = fh.read(int.from_bytes(length_bytes, "little"))
    for part in (magic, length_bytes, header):
        hasher.update(part)
    try:
        meta = _parse_header(header)
        dtype = np.lib.format.descr_to_dtype(meta["descr"])
        array = np.empty(meta["shape"], dtype=dtype, order="F" if meta["fortran_order"] else "C")
        flat = array.T if meta["fortran_order"] else array
        buffer = memoryview(flat.reshape(-1).view(np.uint8)) if array.size else memoryview(bytearray())  # type: ignore[arg-type]
    except Exception as exc:  # a damaged header, whatever the parser tripped on
        raise ValueError(f"bad .npy header {header[:80]!r}: {exc}") from exc
    offset = 0
    while offset < len(buffer):
        n = fh.readinto(buffer[offset : offset + CHUNK])  # type: ignore[attr-defined]
        if not n:
            break
        hasher.update(buffer[offset : offset + n])
        offset += n
    hasher.update(fh.read())  # anything after the data makes the hash (and the check) fail
    return array


def _parse_header(header: bytes) -> dict[str, Any]:
    import ast

    return dict(ast.literal_eval(header.decode("latin1")))


class Deferred:
    """Decoding that must wait until the bytes' hash has been checked."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
