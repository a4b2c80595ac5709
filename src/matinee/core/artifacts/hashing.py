"""Content keys: the BLAKE3 hash of a blob's bytes, as 64 hex digits.

BLAKE3 hashes about four times faster than SHA-256 here (a 200 MB array in
0.026 s against 0.10 s on one core), which matters because every artifact is
hashed when saved and again when read back. It runs on the calling thread
only: a multi-threaded hash would leave a thread pool behind that forked task
workers cannot use.
"""

from __future__ import annotations

from typing import Any

from blake3 import blake3


def content_key(data: Any) -> str:
    """The key of ``data`` (bytes or any buffer)."""
    return str(blake3(data).hexdigest())


class ContentHasher:
    """The streaming form of :func:`content_key`: feed bytes with :meth:`update`, read :meth:`hexdigest`."""

    def __init__(self) -> None:
        self._hasher = blake3()

    def update(self, data: Any) -> None:
        """Feed the next bytes (bytes, bytearray or any buffer)."""
        self._hasher.update(data)

    def hexdigest(self) -> str:
        return str(self._hasher.hexdigest())
