"""What the dashboard shows of stored bytes: artifact previews and the heads of task logs.

A preview never loads anything large and never runs stored code:

* ``npy`` arrays: the shape and dtype from the ``.npy`` header alone (a few
  hundred bytes read); the first values too when the array is small.
* ``arrow-df`` / ``arrow-table`` tables: columns, types and the first rows; a
  large table is read only as far as its first record batch.
* ``pickle``: unpickled only when small, and with an unpickler that refuses
  every class but plain data (numbers, strings, lists, dicts, numpy scalars):
  a pickled object of any other class is named, not loaded, since loading it
  would run its code in the server.
* every byte read for a value shown whole is checked against the content key.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from matinee.core.artifacts.hashing import ContentHasher
from matinee.core.artifacts.store import ArtifactRef
from matinee.core.storage.blobs import BlobStore

__all__ = ["LOG_BYTES", "PICKLE_BYTES", "TABLE_BYTES", "log_head", "preview"]

#: The largest pickle unpickled for a preview.
PICKLE_BYTES = 256 << 10
#: The largest table read whole for a preview (larger ones: the first batch only).
TABLE_BYTES = 8 << 20
#: The largest array whose first values are shown (larger ones: shape and dtype only).
ARRAY_BYTES = 1 << 20
#: Bytes of a task log shown.
LOG_BYTES = 64 << 10
#: Rows of a table and characters of a value shown.
HEAD_ROWS, TEXT_CHARS = 8, 400

_SAFE_GLOBALS = {
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "slice"),
    ("builtins", "range"), ("collections", "OrderedDict"),
    ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
}


class _Refused(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only: any other class raises :class:`_Refused` naming it."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")


def _clip(text: str, n: int = TEXT_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _read_verified(blobs: BlobStore, key: str) -> bytes:
    with blobs.open(key) as fh:
        data = fh.read()
    hasher = ContentHasher()
    hasher.update(data)
    if hasher.hexdigest() != key:
        raise ValueError("the stored bytes do not match their content key")
    return bytes(data)


def preview(blobs: BlobStore, ref: ArtifactRef) -> dict[str, Any]:
    """A small, safe description of one artifact.

    Returns
    -------
    dict
        ``kind`` (``value``, ``array``, ``table``, ``object``, ``bytes`` or
        ``unavailable``), ``summary`` (one line) and, by kind, ``text``,
        ``columns`` and ``rows``, ``note``.
    """
    try:
        if ref.codec == "npy":
            return _array(blobs, ref)
        if ref.codec in ("arrow-df", "arrow-table"):
            return _table(blobs, ref)
        if ref.codec == "pickle":
            return _pickle(blobs, ref)
        if ref.codec == "bytes":
            with blobs.open(ref.key) as fh:
                head = fh.read(TEXT_CHARS)
            return {"kind": "bytes", "summary": f"{ref.size:,} bytes",
                    "text": _clip(head.decode("utf-8", "replace"))}
    except Exception as exc:  # a preview is best effort: a damaged blob must not break the page
        return {"kind": "unavailable", "summary": f"no preview: {_clip(str(exc), 200)}"}
    return {"kind": "unavailable", "summary": f"no preview for codec {ref.codec!r}"}


def _array(blobs: BlobStore, ref: ArtifactRef) -> dict[str, Any]:
    import numpy as np

    with blobs.open(ref.key) as fh:
        header = fh.read(4096)
    buffer = io.BytesIO(header)
    major, _minor = np.lib.format.read_magic(buffer)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(buffer)
    out: dict[str, Any] = {"kind": "array", "summary": f"array {tuple(shape)} {dtype}",
                           "shape": list(shape), "dtype": str(dtype)}
    if ref.size <= ARRAY_BYTES:
        data = _read_verified(blobs, ref.key)
        array = np.load(io.BytesIO(data), allow_pickle=False)
        out["text"] = _clip(np.array2string(array.reshape(-1)[:50], threshold=50, precision=4, separator=", "))
    return out


def _cell(value: Any) -> str:
    return _clip("" if value is None else str(value), 80)


def _table(blobs: BlobStore, ref: ArtifactRef) -> dict[str, Any]:
    import pyarrow as pa

    note = None
    if ref.size <= TABLE_BYTES:
        table = pa.ipc.open_stream(pa.py_buffer(_read_verified(blobs, ref.key))).read_all()
        schema, rows_total, head = table.schema, f"{table.num_rows:,}", table.slice(0, HEAD_ROWS)
    else:
        with blobs.open(ref.key) as fh:
            reader = pa.ipc.open_stream(fh)
            schema = reader.schema
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                batch = pa.RecordBatch.from_pylist([], schema=schema)
        head = pa.Table.from_batches([batch]).slice(0, HEAD_ROWS)
        rows_total = "many"
        note = f"the first rows of a {ref.size:,}-byte table (read no further)"
    names = [n for n in schema.names if n != "__index_level_0__"]
    columns = [f"{n}: {schema.field(n).type}" for n in names]
    rows = [[_cell(row.get(n)) for n in names] for row in head.to_pylist()]
    return {"kind": "table", "summary": f"table, {rows_total} rows x {len(names)} columns",
            "columns": columns, "rows": rows, "note": note}


def _pickle(blobs: BlobStore, ref: ArtifactRef) -> dict[str, Any]:
    if ref.size > PICKLE_BYTES:
        return {"kind": "object", "summary": f"Python object, {ref.size:,} bytes (too large to preview)"}
    data = _read_verified(blobs, ref.key)
    try:
        value = _PlainUnpickler(io.BytesIO(data)).load()
    except _Refused as refused:
        return {"kind": "object", "summary": f"Python object ({refused.name}), {ref.size:,} bytes",
                "note": "not loaded here: loading it would run its code; load it with the client"}
    kind = type(value).__name__
    if isinstance(value, (int, float, bool, str, bytes, complex)) or value is None:
        return {"kind": "value", "summary": kind, "text": _clip(repr(value))}
    size = f", {len(value)} item{'' if len(value) == 1 else 's'}" if hasattr(value, "__len__") else ""
    return {"kind": "value", "summary": f"{kind}{size}", "text": _clip(repr(value))}


def log_head(blobs: BlobStore, key: str | None) -> str | None:
    """The first :data:`LOG_BYTES` of a task log (``None`` without one), marked when cut."""
    if not key:
        return None
    try:
        with blobs.open(key) as fh:
            data = fh.read(LOG_BYTES + 1)
    except Exception as exc:  # a missing log blob must not break the page
        return f"(log unavailable: {exc})"
    text = data[:LOG_BYTES].decode("utf-8", "replace")
    return text + ("\n… (cut: the log is longer; see `matinee logs`)" if len(data) > LOG_BYTES else "")
