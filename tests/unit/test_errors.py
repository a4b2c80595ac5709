"""One error root, structured fields, HTTP statuses and the missing-extra message."""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path

import pytest

import matinee
from matinee import errors
from matinee.errors import (
    ArtifactError,
    ConfigError,
    CorruptArtifactError,
    FlowError,
    GraphError,
    MatineeError,
    MergeError,
    NamespaceError,
    NotFoundError,
    ParameterError,
    RunFailed,
    StorageError,
    TaskFailed,
    missing_extra,
)

CLASSES = [obj for _, obj in inspect.getmembers(errors, inspect.isclass) if obj.__module__ == errors.__name__]


def test_the_module_defines_the_expected_errors() -> None:
    assert {c.__name__ for c in CLASSES} == {
        "MatineeError", "ConfigError", "FlowError", "GraphError", "ParameterError", "NotFoundError",
        "NamespaceError", "ArtifactError", "CorruptArtifactError", "StorageError", "TaskFailed", "RunFailed",
        "MergeError", "ConflictError", "NotSupportedError",
    }


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_derives_from_matinee_error(cls: type) -> None:
    assert issubclass(cls, MatineeError)
    assert issubclass(cls, Exception)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_is_drawn_in_the_module_docstring(cls: type) -> None:
    assert errors.__doc__ is not None
    assert cls.__name__ in errors.__doc__


@pytest.mark.parametrize(
    "cls, parent",
    [(GraphError, FlowError), (NamespaceError, NotFoundError), (CorruptArtifactError, ArtifactError)],
)
def test_specific_errors_are_caught_by_their_family(cls: type, parent: type) -> None:
    assert issubclass(cls, parent)
    with pytest.raises(parent):
        raise cls("x")


@pytest.mark.parametrize(
    "cls, status",
    [
        (MatineeError, 500), (ConfigError, 400), (FlowError, 400), (GraphError, 400), (ParameterError, 400),
        (NotFoundError, 404), (NamespaceError, 404), (ArtifactError, 500), (CorruptArtifactError, 500),
        (StorageError, 500), (TaskFailed, 500), (RunFailed, 500), (MergeError, 500), (errors.ConflictError, 409),
        (errors.NotSupportedError, 501),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_status_codes(cls: type[MatineeError], status: int) -> None:
    assert cls.status == status
    assert cls("x").status == status


def test_fields_are_kept_as_a_dict_and_as_attributes() -> None:
    err = NotFoundError("run 'F/12' is not stored", run_id="F/12", flow="F")
    assert err.message == str(err) == "run 'F/12' is not stored"
    assert err.fields == {"run_id": "F/12", "flow": "F"}
    assert (err.run_id, err.flow) == ("F/12", "F")  # type: ignore[attr-defined]


def test_to_dict_is_the_json_body() -> None:
    err = ParameterError("parameter 'alpha' must be a float", parameter="alpha", allowed=[1, 2], extra={"a": 1})
    body = err.to_dict()
    assert body == {
        "error": "ParameterError", "detail": "parameter 'alpha' must be a float",
        "parameter": "alpha", "allowed": [1, 2], "extra": {"a": 1},
    }
    assert json.loads(json.dumps(body)) == body


def test_to_dict_leaves_out_fields_that_are_not_json(tmp_path: Path) -> None:
    err = StorageError("cannot write", path=tmp_path, code=5, reason=None, cause=ValueError("x"))
    assert err.to_dict() == {"error": "StorageError", "detail": "cannot write", "code": 5, "reason": None}
    json.dumps(err.to_dict())


def test_to_dict_without_fields() -> None:
    assert TaskFailed("task died").to_dict() == {"error": "TaskFailed", "detail": "task died"}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_errors_survive_pickling_with_their_fields(cls: type[MatineeError]) -> None:
    """Errors cross process boundaries (the process executor), so they must pickle whole."""
    err = cls("something failed", run_id=3, step="train")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == "something failed"
    assert back.fields == {"run_id": 3, "step": "train"}
    assert back.step == "train"  # type: ignore[attr-defined]
    assert back.to_dict() == err.to_dict()


def test_missing_extra_names_the_pip_command() -> None:
    err = missing_extra("psycopg", "postgres")
    assert isinstance(err, ConfigError)
    assert "pip install 'matinee[postgres]'" in str(err)
    assert "'psycopg'" in str(err)
    assert (err.module, err.extra) == ("psycopg", "postgres")  # type: ignore[attr-defined]
    assert err.to_dict()["extra"] == "postgres"
    assert err.status == 400


def test_the_public_errors_are_the_same_objects() -> None:
    for name in ("MatineeError", "ConfigError", "FlowError", "GraphError", "ParameterError", "NotFoundError",
                 "ArtifactError"):
        assert getattr(matinee, name) is getattr(errors, name)
