"""The content-addressed artifact store.

A value is encoded (:mod:`.codecs`), its bytes hashed with BLAKE3 (:mod:`.hashing`), and stored
once under that hash in a blob store: saving a value that is already stored
writes nothing. Loading re-hashes every byte read and raises
:class:`~matinee.errors.CorruptArtifactError` when the bytes no longer match
their key. Runs and tasks hold :class:`ArtifactRef` keys, never paths.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from matinee.core.artifacts import codecs
from matinee.core.artifacts.hashing import ContentHasher
from matinee.core.storage.blobs import BlobStore
from matinee.errors import ArtifactError, CorruptArtifactError


class ArtifactRef(NamedTuple):
    """Where an artifact's bytes are: the content key, how they decode, how many."""

    key: str
    codec: str
    size: int


class ArtifactStore:
    """Save and load values by content hash on top of a :class:`BlobStore`."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._known: set[str] = set()

    def save(self, value: Any) -> ArtifactRef:
        """Store ``value`` (once) and return its reference."""
        try:
            codec, chunks = codecs.encode(value)
        except Exception as exc:
            raise ArtifactError(
                f"cannot store a value of type {type(value).__name__}: {exc}; "
                "make it picklable or keep it out of self (use a local variable or a _private name)"
            ) from exc
        return self._put(codec, chunks)

    def save_bytes(self, data: bytes) -> ArtifactRef:
        """Store raw bytes (task logs, included files)."""
        return self._put("bytes", [data])

    def _put(self, codec: str, chunks: codecs.Chunks) -> ArtifactRef:
        size = sum(len(chunk) if isinstance(chunk, bytes) else chunk.nbytes for chunk in chunks)
        hasher = ContentHasher()
        for chunk in chunks:
            hasher.update(chunk)
        key = hasher.hexdigest()
        if key not in self._known:
            if not self.blobs.claim(key):
                self.blobs.put(key, chunks)
            self._known.add(key)
        return ArtifactRef(key, codec, size)

    def load(self, ref: ArtifactRef | tuple[str, str, int]) -> Any:
        """Load and verify the value behind ``ref``."""
        key, codec, _size = ref
        hasher = ContentHasher()
        with self.blobs.open(key) as fh:
            try:
                value = codecs.decode(codec, fh, hasher)
            except (ValueError, EOFError, OSError) as exc:
                raise CorruptArtifactError(
                    f"blob {key} cannot be decoded as {codec}: {exc}", key=key
                ) from exc
        digest = hasher.hexdigest()
        if digest != key:
            self._known.discard(key)
            raise CorruptArtifactError(
                f"blob {key} is corrupt: its bytes hash to {digest}; "
                "the stored copy was changed after it was written",
                key=key,
            )
        if isinstance(value, codecs.Deferred):
            try:
                value = value.fn()
            except Exception as exc:
                raise ArtifactError(f"cannot decode artifact {key} ({codec}): {exc}", key=key) from exc
        return value

    def load_bytes(self, key: str) -> bytes:
        return self.load((key, "bytes", 0))
