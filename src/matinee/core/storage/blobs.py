"""Blob stores: where artifact bytes live, under their content hash.

A blob store is a flat map from key (a hex SHA-256) to bytes, with five
operations. :class:`LocalBlobStore` is a folder, written atomically (a temp file
in the same folder, then a rename), so a crash never leaves a partial blob under
a real key. :class:`FsspecBlobStore` takes any fsspec URL (``s3://bucket/prefix``,
``memory://``, ``file://...``); object stores make each put atomic themselves.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

from matinee.errors import ConfigError, NotFoundError, missing_extra

Chunks = Iterable[bytes | memoryview]


class BlobInfo(NamedTuple):
    key: str
    size: int
    mtime: float


class BlobStore(Protocol):
    """What the artifact store needs from a place to keep bytes."""

    url: str

    def exists(self, key: str) -> bool: ...

    def claim(self, key: str) -> bool:
        """Whether ``key`` is stored; if so, refresh its time so a running gc sees it as new."""
        ...

    def put(self, key: str, chunks: Chunks) -> int: ...

    def open(self, key: str) -> IO[bytes]: ...

    def delete(self, key: str) -> None: ...

    def list(self) -> Iterator[BlobInfo]: ...


def open_blob_store(url: str) -> BlobStore:
    """A blob store for a local path or ``file://`` URL, or any other fsspec URL."""
    if "://" not in url:
        return LocalBlobStore(Path(url))
    if url.startswith("file://"):
        return LocalBlobStore(Path(url[len("file://") :]))
    return FsspecBlobStore(url)


class LocalBlobStore:
    """Blobs as files ``<root>/<key[:2]>/<key>``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)
        self._tmp = self.root / "tmp"
        self._made: set[Path] = set()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def claim(self, key: str) -> bool:
        try:
            os.utime(self.path(key))
        except FileNotFoundError:
            return False
        return True

    def put(self, key: str, chunks: Chunks) -> int:
        target = self.path(key)
        self._mkdir(target.parent)
        self._mkdir(self._tmp)
        tmp = self._tmp / f"{key}.{uuid.uuid4().hex}"
        size = 0
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    size += fh.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return size

    def open(self, key: str) -> IO[bytes]:
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"blob {key} is not in the store at {self.root}", key=key) from None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list(self) -> Iterator[BlobInfo]:
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            for entry in os.scandir(sub):
                st = entry.stat()
                yield BlobInfo(entry.name, st.st_size, st.st_mtime)

    def _mkdir(self, path: Path) -> None:
        if path not in self._made:
            path.mkdir(parents=True, exist_ok=True)
            self._made.add(path)


class FsspecBlobStore:
    """Blobs on any fsspec filesystem, at ``<url>/<key[:2]>/<key>``."""

    def __init__(self, url: str) -> None:
        try:
            import fsspec
        except ImportError:  # pragma: no cover - a core dependency
            raise missing_extra("fsspec", "s3") from None
        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            protocol = url.split("://", 1)[0]
            if protocol in ("s3", "s3a"):
                raise missing_extra("s3fs", "s3") from exc
            raise ConfigError(f"cannot open blob store {url!r}: {exc} (MATINEE_BLOB_URL)") from exc
        self.url = url
        self.root = root.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key}"

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def claim(self, key: str) -> bool:
        if not self.exists(key):
            return False
        try:
            self.fs.touch(self._path(key), truncate=False)
        except (NotImplementedError, ValueError, OSError):
            pass  # a store that cannot touch keeps the first write's time
        return True

    def put(self, key: str, chunks: Chunks) -> int:
        data = b"".join(bytes(c) for c in chunks)
        path = self._path(key)
        tmp = f"{self.root}/tmp/{key}.{uuid.uuid4().hex}"
        self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
        self.fs.makedirs(f"{self.root}/{key[:2]}", exist_ok=True)
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, path)
        return len(data)

    def open(self, key: str) -> Any:
        try:
            return self.fs.open(self._path(key), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"blob {key} is not in the store at {self.url}", key=key) from None

    def delete(self, key: str) -> None:
        if self.fs.exists(self._path(key)):
            self.fs.rm(self._path(key))

    def list(self) -> Iterator[BlobInfo]:
        if not self.fs.exists(self.root):
            return
        for info in self.fs.find(self.root, detail=True).values():
            name = info["name"].rstrip("/").rsplit("/", 1)[-1]
            parent = info["name"].rstrip("/").rsplit("/", 2)[-2]
            if parent == "tmp" or len(parent) != 2:
                continue
            mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
            yield BlobInfo(name, int(info.get("size", 0)), _seconds(mtime))


def _seconds(value: Any) -> float:
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value or 0)
