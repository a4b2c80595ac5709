"""Content keys: SHA-256, spread over the CPU cores for large blobs.

A blob under :data:`PARALLEL_FROM` bytes is keyed by the SHA-256 of its bytes.
A larger one by the SHA-256 of the concatenated SHA-256 digests of its
consecutive :data:`PIECE`-byte pieces, which are hashed on a thread pool
(hashlib releases the GIL), so hashing a 200 MB array takes about half as long
on two cores, and overlaps with reading it back. Which rule applies follows
from the blob's size alone, so a key can always be checked.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

PIECE = 8 * 1024 * 1024
PARALLEL_FROM = 4 * PIECE

_pool: ThreadPoolExecutor | None = None
_pool_pid = -1


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():  # never reuse a parent's pool after a fork
        _pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="matinee-hash")
        _pool_pid = os.getpid()
    return _pool


def _sha256(parts: list[Any]) -> bytes:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part)
    return hasher.digest()


class ContentHasher:
    """Streaming content key of a blob of ``total`` bytes (``None``: all bytes come in one update)."""

    def __init__(self, total: int | None = None) -> None:
        self.total = total
        self._flat: Any = None
        self._pieces: list[Future[bytes]] = []
        self._current: list[Any] = []  # views making up the piece being gathered (no copies)
        self._current_len = 0
        self._seen = 0
        if total is not None:
            self._choose(total)

    def _choose(self, total: int) -> None:
        self.total = total
        if total < PARALLEL_FROM:
            self._flat = hashlib.sha256()

    def update(self, data: Any) -> None:
        """Feed the next bytes (bytes, bytearray or a memoryview that stays unchanged until the end)."""
        view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
        if self.total is None:
            self._choose(len(view))
        self._seen += len(view)
        if self._flat is not None:
            self._flat.update(view)
            return
        while len(view):
            take = min(PIECE - self._current_len, len(view))
            self._current.append(view[:take])
            self._current_len += take
            view = view[take:]
            if self._current_len == PIECE:
                self._submit()

    def _submit(self) -> None:
        self._pieces.append(_executor().submit(_sha256, self._current))
        self._current, self._current_len = [], 0

    def hexdigest(self) -> str:
        if self._flat is not None:
            return str(self._flat.hexdigest())
        if self._current:
            self._submit()
        outer = hashlib.sha256()
        for piece in self._pieces:
            outer.update(piece.result())
        outer.update(self._seen.to_bytes(8, "little"))
        return outer.hexdigest()
