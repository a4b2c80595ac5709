"""Every error matinee raises on purpose derives from :class:`MatineeError`.

The hierarchy::

    MatineeError                      status 500 unless a subclass says otherwise
    ├── ConfigError                   a setting or a missing optional extra (400)
    ├── FlowError                     a flow definition that cannot run (400)
    │   └── GraphError                the step graph is malformed; names the step
    ├── ParameterError                a bad run parameter; names the parameter (400)
    ├── NotFoundError                 a run, step, task, artifact or flow is not stored (404)
    │   └── NamespaceError            it exists, but outside the current namespace
    ├── ArtifactError                 an artifact cannot be encoded or decoded
    │   └── CorruptArtifactError      a stored blob does not match its content hash
    ├── StorageError                  the metadata or blob store failed
    ├── TaskFailed                    a task raised, timed out or its process died
    ├── RunFailed                     a run finished unsuccessfully
    ├── MergeError                    ``merge_artifacts`` found conflicting values
    ├── ConflictError                 the state a change expected has moved on (409)
    └── NotSupportedError             an operation this object does not offer (501)

Library code raises these; only the edges (the CLI, the HTTP server) turn them into
a one-line message or a JSON body. The message is built here, from structured fields,
so that the CLI, the server and the tests all see the same words.
"""

from __future__ import annotations

from typing import Any


class MatineeError(Exception):
    """Root of matinee's errors.

    Parameters
    ----------
    message
        What went wrong and, where there is one, the fix.
    **fields
        Structured context (``run_id``, ``step``, ``parameter``, ...) kept on
        :attr:`fields` and as attributes, so callers need not parse the text.
    """

    status: int = 500

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body an HTTP edge sends: ``{"error": ..., "detail": ...}``."""
        detail = {k: v for k, v in self.fields.items() if _jsonable(v)}
        return {"error": type(self).__name__, "detail": self.message, **detail}


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))


class ConfigError(MatineeError):
    """A setting is invalid, or an optional extra is not installed."""

    status = 400


def missing_extra(module: str, extra: str) -> ConfigError:
    """The error for an optional dependency that is not installed."""
    return ConfigError(
        f"this needs the optional package {module!r}: pip install 'matinee[{extra}]'",
        module=module,
        extra=extra,
    )


class FlowError(MatineeError):
    """A flow cannot be loaded or run as written."""

    status = 400


class GraphError(FlowError):
    """The flow's step graph is malformed."""


class ParameterError(MatineeError):
    """A run parameter is unknown, missing or of the wrong type."""

    status = 400


class NotFoundError(MatineeError):
    """The thing asked for is not in the store."""

    status = 404


class NamespaceError(NotFoundError):
    """The object exists but is outside the current namespace."""


class ArtifactError(MatineeError):
    """An artifact cannot be encoded or decoded."""


class CorruptArtifactError(ArtifactError):
    """A stored blob's bytes do not hash to its key."""


class StorageError(MatineeError):
    """The metadata store or the blob store failed."""


class TaskFailed(MatineeError):
    """A task raised, timed out, or its process died."""


class RunFailed(MatineeError):
    """A run ended unsuccessfully."""


class MergeError(MatineeError):
    """``merge_artifacts`` found artifacts whose values differ between inputs."""


class ConflictError(MatineeError):
    """The change was refused because the state it expected has moved on (someone else changed it)."""

    status = 409


class NotSupportedError(MatineeError):
    """The object does not offer this operation (e.g. item similarities of a popularity model)."""

    status = 501
