"""Blob stores: where artifact bytes live, under their content hash.

A blob store is a flat map from key (the hex content hash) to bytes.
:class:`LocalBlobStore` is a folder, written atomically (a temp file in the same
folder, then a rename), so a crash never leaves a partial blob under a real key.
:class:`S3BlobStore` keeps blobs in an S3 bucket (``s3://bucket/prefix``, AWS or
any S3-compatible server) through s3fs. :class:`FsspecBlobStore` takes any other
fsspec URL (``memory://``, ``gs://``, ...).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

from matinee.errors import ConfigError, NotFoundError, StorageError, missing_extra

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

    def delete_many(self, keys: Iterable[str]) -> None: ...

    def list(self) -> Iterator[BlobInfo]: ...


def open_blob_store(url: str) -> BlobStore:
    """A blob store for a local path or ``file://`` URL, an ``s3://`` URL, or any other fsspec URL."""
    if "://" not in url:
        return LocalBlobStore(Path(url))
    if url.startswith("file://"):
        return LocalBlobStore(Path(url[len("file://") :]))
    if url.split("://", 1)[0] in ("s3", "s3a"):
        return S3BlobStore(url)
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

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.delete(key)

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

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.delete(key)

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



#: The setting an S3 error message points at.
_SETTING = "blob_url (MATINEE_ARTIFACT_URL)"
_CREDENTIALS = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
_ENDPOINT = "AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL"
_DENIED = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "InvalidClientTokenId", "AuthorizationHeaderMalformed", "403",
}


class S3BlobStore:
    """Blobs in an S3 bucket, at ``s3://<bucket>/<prefix>/<key[:2]>/<key>``, through s3fs.

    The endpoint, region and credentials come from the usual AWS settings, read by
    botocore: ``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``) for an S3-compatible
    server, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``
    or ``AWS_PROFILE``, ``AWS_DEFAULT_REGION``; s3fs options can be given as JSON in
    ``FSSPEC_S3``.

    Publishing is atomic without a rename (a rename is a copy on S3): a blob is
    written straight to its final key, with one PUT when it is smaller than
    :attr:`part_size` and a multipart upload otherwise, and S3 makes an object
    visible only once that PUT or the multipart completion succeeds. An upload that
    fails midway is aborted, so nothing appears. Writes are conditional
    (``If-None-Match: *``): a blob already there, stored by someone else meanwhile,
    is left as it is; its bytes are the same, since the key is their hash.

    S3 cannot change an object's time, so :meth:`claim` records "still wanted" in a
    small marker object ``<prefix>/claims/<key>``; :meth:`list` reports a blob's time
    as the later of its own and its marker's, and :meth:`delete` removes both.
    """

    #: Bytes per multipart part (S3 wants at least 5 MiB for every part but the last).
    part_size = 8 * 2**20
    #: Parts uploaded at once.
    concurrency = 4
    #: Keys asked for per listing request (S3 returns at most 1000).
    page_size = 1000

    def __init__(self, url: str) -> None:
        import importlib.util

        if importlib.util.find_spec("s3fs") is None:  # imported on first use: it takes a second
            raise missing_extra("s3fs", "s3")
        rest = url.partition("://")[2]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigError(f"the blob store URL {url!r} names no bucket; use s3://bucket/prefix ({_SETTING})")
        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._conditional = True
        self._pid = -1
        self._fs: Any = None

    @property
    def fs(self) -> Any:
        """The s3fs filesystem, made again in a forked child (an s3fs client is not fork-safe).

        A child reuses the parent's botocore session, whose loaded service model and
        credentials it inherits, so a forked task's first request is quicker.
        """
        if self._fs is None or self._pid != os.getpid():
            import fsspec

            inherited = getattr(self._fs, "session", None)
            options: dict[str, Any] = {"use_listings_cache": False}
            if inherited is not None:
                options["session"] = inherited
            self._fs = fsspec.filesystem("s3", **options)
            self._pid = os.getpid()
        return self._fs

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key[:2]}/{key}" if self.prefix else f"{key[:2]}/{key}"

    def _claim_key(self, key: str) -> str:
        return f"{self.prefix}/claims/{key}" if self.prefix else f"claims/{key}"

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return self.fs.call_s3(method, Bucket=self.bucket, **kwargs)
        except Exception as exc:
            raise self._error(exc, method, kwargs.get("Key")) from exc

    # -- the BlobStore operations ------------------------------------------------

    def exists(self, key: str) -> bool:
        try:
            self.fs.call_s3("head_object", Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey"):
                return False
            raise self._error(exc, "head_object", self._key(key)) from exc
        return True

    def claim(self, key: str) -> bool:
        if not self.exists(key):
            return False
        self._call("put_object", Key=self._claim_key(key), Body=b"")
        return True

    def put(self, key: str, chunks: Chunks) -> int:
        target = self._key(key)
        part = self.part_size
        buffer = bytearray()
        pending: list[bytes] = []
        parts: list[dict[str, Any]] = []
        upload: str | None = None
        size = 0
        try:
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                size += len(view)
                while len(view):
                    take = min(part - len(buffer), len(view))
                    buffer += view[:take]
                    view = view[take:]
                    if len(buffer) == part:
                        pending.append(bytes(buffer))
                        buffer = bytearray()
                        if len(pending) == self.concurrency:
                            upload = upload or self._call("create_multipart_upload", Key=target)["UploadId"]
                            parts += self._upload_parts(target, upload, len(parts), pending)
                            pending = []
            if upload is None and not pending:
                self._publish(target, "put_object", Body=bytes(buffer))
                return size
            if buffer:
                pending.append(bytes(buffer))
            upload = upload or self._call("create_multipart_upload", Key=target)["UploadId"]
            parts += self._upload_parts(target, upload, len(parts), pending)
            if self._publish(
                target, "complete_multipart_upload", UploadId=upload, MultipartUpload={"Parts": parts}
            ):
                upload = None
            else:  # already stored: a refused completion leaves the upload open
                self._abort(target, upload)
                upload = None
        except BaseException:
            if upload is not None:
                self._abort(target, upload)
            raise
        return size

    def _abort(self, target: str, upload: str) -> None:
        try:
            self.fs.call_s3("abort_multipart_upload", Bucket=self.bucket, Key=target, UploadId=upload)
        except Exception:
            pass  # an unfinished upload is never visible; a bucket lifecycle rule reclaims its parts

    def _upload_parts(self, target: str, upload: str, before: int, bodies: list[bytes]) -> list[dict[str, Any]]:
        import asyncio

        from fsspec.asyn import sync

        fs = self.fs

        async def one(number: int, body: bytes) -> dict[str, Any]:
            out = await fs._call_s3(
                "upload_part", Bucket=self.bucket, Key=target, UploadId=upload, PartNumber=number, Body=body
            )
            return {"PartNumber": number, "ETag": out["ETag"]}

        async def all_parts() -> list[dict[str, Any]]:
            return list(await asyncio.gather(*(one(before + i + 1, b) for i, b in enumerate(bodies))))

        try:
            return sync(fs.loop, all_parts)
        except Exception as exc:
            raise self._error(exc, "upload_part", target) from exc

    def _publish(self, target: str, method: str, **kwargs: Any) -> bool:
        """Make ``target`` appear, unless it is there already (then return False)."""
        condition = {"IfNoneMatch": "*"} if self._conditional else {}
        try:
            self.fs.call_s3(method, Bucket=self.bucket, Key=target, **kwargs, **condition)
        except Exception as exc:
            code = _code(exc)
            if code == "PreconditionFailed":
                return False  # already stored: the same bytes, since the key is their hash
            if code == "ConditionalRequestConflict" and self._head(target):
                return False  # a concurrent upload of the same bytes won
            if code == "NotImplemented" and condition:
                self._conditional = False  # a server without conditional writes
                return self._publish(target, method, **kwargs)
            raise self._error(exc, method, target) from exc
        return True

    def _head(self, target: str) -> bool:
        try:
            self.fs.call_s3("head_object", Bucket=self.bucket, Key=target)
        except Exception:
            return False
        return True

    def open(self, key: str) -> Any:
        path = f"{self.bucket}/{self._key(key)}"
        try:
            fh = self.fs.open(path, "rb", block_size=self.part_size * 4)
        except Exception as exc:
            if isinstance(exc, FileNotFoundError) and _code(exc) not in ("NoSuchBucket",):
                raise NotFoundError(f"blob {key} is not in the store at {self.url}", key=key) from None
            raise self._error(exc, "get_object", self._key(key)) from exc
        return _Reader(fh, self, self._key(key))

    def delete(self, key: str) -> None:
        self.delete_many([key])

    def delete_many(self, keys: Iterable[str]) -> None:
        batch: list[dict[str, str]] = []
        for key in keys:
            batch += [{"Key": self._key(key)}, {"Key": self._claim_key(key)}]
            if len(batch) >= 1000:  # the most one DeleteObjects takes
                self._delete(batch)
                batch = []
        if batch:
            self._delete(batch)

    def _delete(self, objects: list[dict[str, str]]) -> None:
        out = self._call("delete_objects", Delete={"Objects": objects, "Quiet": True})
        errors = out.get("Errors") or []
        if errors:
            first = errors[0]
            raise StorageError(
                f"cannot delete {first.get('Key')} from {self.url}: {first.get('Code')}: {first.get('Message')}",
                key=first.get("Key"),
            )

    def list(self) -> Iterator[BlobInfo]:
        start = f"{self.prefix}/" if self.prefix else ""
        blobs: dict[str, tuple[int, float]] = {}
        claims: dict[str, float] = {}
        token: dict[str, str] = {}
        while True:
            page = self._call("list_objects_v2", Prefix=start, MaxKeys=self.page_size, **token)
            for obj in page.get("Contents", []):
                parent, _, name = obj["Key"][len(start) :].partition("/")
                if "/" in name:
                    continue
                when = _seconds(obj.get("LastModified"))
                if parent == "claims":
                    claims[name] = when
                elif parent == name[:2]:
                    blobs[name] = (int(obj.get("Size", 0)), when)
            if not page.get("IsTruncated"):
                break
            token = {"ContinuationToken": page["NextContinuationToken"]}
        for key, (size, when) in sorted(blobs.items()):
            yield BlobInfo(key, size, max(when, claims.get(key, 0.0)))
        for key in sorted(set(claims) - set(blobs)):  # a claim whose blob is gone: gc removes it too
            yield BlobInfo(key, 0, claims[key])

    # -- errors ------------------------------------------------------------------

    def endpoint(self) -> str:
        """The endpoint the client talks to, for messages."""
        client = getattr(self._fs, "_s3", None)
        url = getattr(getattr(client, "meta", None), "endpoint_url", None)
        url = url or getattr(self._fs, "endpoint_url", None)
        return str(url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3")

    def _error(self, exc: BaseException, method: str, key: str | None) -> Exception:
        """A one-line :class:`MatineeError` for a failed S3 call, naming the setting to fix."""
        code = _code(exc)
        names = {type(e).__name__ for e in _chain(exc)}
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        if code == "NoSuchBucket":
            return ConfigError(
                f"the bucket {self.bucket!r} does not exist at {self.endpoint()}: create it, or set "
                f"{_SETTING} to an existing one (now {self.url})",
                setting="blob_url",
            )
        if code in _DENIED or "PermissionError" in names:
            return ConfigError(
                f"{self.endpoint()} refused access to {where} ({code or 'access denied'}): check "
                f"{_CREDENTIALS}, and that they may use the bucket in {_SETTING}",
                setting="blob_url",
            )
        if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
            return ConfigError(
                f"no AWS credentials for the blob store {where}: set {_CREDENTIALS}", setting="blob_url"
            )
        if names & {"EndpointConnectionError", "ConnectTimeoutError", "ProxyConnectionError", "ConnectionError"}:
            return StorageError(
                f"cannot reach the S3 endpoint {self.endpoint()} for {where}: check {_ENDPOINT}",
                setting="blob_url",
            )
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return StorageError(f"S3 {method} of {key or where} at {self.endpoint()} failed: {detail}", key=key)


class _Reader:
    """A blob being read from S3: its read errors become :class:`MatineeError`, not ``OSError``
    (which a decoder would take for damaged bytes)."""

    def __init__(self, fh: Any, store: S3BlobStore, key: str) -> None:
        self._fh = fh
        self._store = store
        self._s3_key = key

    def read(self, size: int = -1) -> bytes:
        try:
            return self._fh.read(size)
        except Exception as exc:
            raise self._store._error(exc, "get_object", self._s3_key) from exc

    def readinto(self, buffer: Any) -> int:
        try:
            return self._fh.readinto(buffer)
        except Exception as exc:
            raise self._store._error(exc, "get_object", self._s3_key) from exc

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = 0
    while exc is not None and seen < 10:
        yield exc
        exc = exc.__cause__ or exc.__context__
        seen += 1


def _code(exc: BaseException) -> str:
    """The S3 error code (``NoSuchBucket``, ``404``, ...) behind ``exc``, or ``""``."""
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
    return ""

def _seconds(value: Any) -> float:
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value or 0)
