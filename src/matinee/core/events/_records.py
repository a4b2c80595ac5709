"""Turning decision and feedback records into validated rows, and parsing times.

A record is plain data: a mapping, or any object with the fields as attributes
(such as the artwork app's ``Decision``). Everything is checked here, before a
record reaches the writer, so a bad record raises in the caller's thread and
never touches what is already stored.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np

from matinee.errors import ParameterError

#: Columns of the decisions table, in storage order.
DECISION_COLUMNS = (
    "decision_id", "ts", "unit_id", "endpoint", "model", "model_version", "arm",
    "context", "candidates", "action", "propensity",
)
#: Columns of the feedback table, in storage order.
FEEDBACK_COLUMNS = ("decision_id", "ts", "event", "reward")

MAX_ID_LENGTH = 200
_MISSING = object()


def _get(record: Any, name: str, default: Any = _MISSING) -> Any:
    if type(record) is dict or isinstance(record, Mapping):
        value = record.get(name, default)
    else:
        value = getattr(record, name, default)
    return value


def _required(record: Any, name: str, kind: str) -> Any:
    value = _get(record, name)
    if value is _MISSING or value is None:
        raise ParameterError(f"{kind}.{name} is missing", parameter=name)
    return value


def check_decision_id(value: Any, kind: str = "decision") -> str:
    """Return ``value`` if it is a well-formed decision id, else raise :class:`ParameterError`."""
    if type(value) is str and value.isalnum() and len(value) <= MAX_ID_LENGTH:  # letters and digits: printable
        return value
    if value is None or value is _MISSING:
        raise ParameterError(f"{kind}.decision_id is missing", parameter="decision_id")
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or not value.isprintable() \
            or any(ch.isspace() for ch in value):
        raise ParameterError(
            f"{kind}.decision_id must be a non-empty string of at most {MAX_ID_LENGTH} printable "
            f"characters without spaces, not {value!r}",
            parameter="decision_id",
        )
    return value


def _finite(value: Any, name: str, kind: str) -> float:
    try:
        number = float(value)
    except OverflowError:
        raise ParameterError(f"{kind}.{name} must be a finite number, not an integer of {len(str(value))} digits",
                             parameter=name) from None
    except (TypeError, ValueError):
        raise ParameterError(f"{kind}.{name} must be a number, not {value!r}", parameter=name) from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ParameterError(f"{kind}.{name} must be a finite number, not {value!r}", parameter=name)
    return number


def _timestamp(record: Any, kind: str) -> float:
    value = _get(record, "ts", None)
    if value is None:
        return time.time()
    if isinstance(value, datetime):
        return value.timestamp()
    return _finite(value, "ts", kind)


def _label(record: Any, name: str, kind: str, default: str | None) -> str | None:
    value = _get(record, name, None)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ParameterError(f"{kind}.{name} must be a string, not {value!r}", parameter=name)
    return value


def _json(value: Any, name: str, kind: str) -> str:
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{kind}.{name} must be JSON-serializable: {exc}", parameter=name) from None


def _numpy_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_numpy_default)


def decision_row(record: Any) -> tuple[Any, ...]:
    """Validate one decision record and return its row (see :data:`DECISION_COLUMNS`)."""
    kind = "decision"
    decision_id = check_decision_id(_get(record, "decision_id", None), kind)
    unit_id = _required(record, "unit_id", kind)
    if not isinstance(unit_id, (str, int)) or isinstance(unit_id, bool):
        raise ParameterError(f"decision.unit_id must be a string or an integer, not {unit_id!r}", parameter="unit_id")
    propensity = _finite(_required(record, "propensity", kind), "propensity", kind)
    if not 0.0 < propensity <= 1.0:
        raise ParameterError(f"decision.propensity must be in (0, 1], not {propensity!r}", parameter="propensity")
    raw_context = _get(record, "context", None)
    try:
        context = np.asarray([] if raw_context is None else raw_context, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"decision.context must be a list of numbers, not {raw_context!r}", parameter="context") from None
    if context.ndim != 1 or not np.isfinite(context).all():
        raise ParameterError("decision.context must be a flat list of finite numbers", parameter="context")
    candidates = _get(record, "candidates", None)
    candidates = [] if candidates is None else list(candidates)
    action = _required(record, "action", kind)
    if candidates and action not in candidates:
        raise ParameterError(f"decision.action {action!r} is not one of the candidates", parameter="action")
    version = _get(record, "model_version", None)
    if isinstance(version, np.integer):
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, (int, str, type(None))):
        raise ParameterError(f"decision.model_version must be an integer or a string, not {version!r}",
                             parameter="model_version")
    return (
        decision_id,
        _timestamp(record, kind),
        str(unit_id),
        _label(record, "endpoint", kind, ""),
        _label(record, "model", kind, ""),
        version,
        _label(record, "arm", kind, None),
        _json(context.tolist(), "context", kind),
        _json(candidates, "candidates", kind),
        _json(action, "action", kind),
        propensity,
    )


def decision_rows(shared: Mapping[str, Any], varying: Iterable[tuple[Any, Any, Any, Any]]) -> list[tuple[Any, ...]]:
    """Rows of decisions alike but for ``decision_id, candidates, action, propensity``.

    ``shared`` holds the other fields (``ts, unit_id, context, endpoint, model,
    model_version, arm``); ``varying`` gives the four fields of each decision. The
    rows and the errors are those of :func:`decision_row` on each full record, in
    order; the shared fields are checked and encoded once.
    """
    rows: list[tuple[Any, ...]] = []
    head: tuple[Any, ...] | None = None
    shareable = _get(shared, "ts", None) is not None  # without a ts, each decision's is the time it is checked
    encoded: dict[tuple[Any, ...], tuple[str, list[Any]]] = {}
    for decision_id, candidates, action, propensity in varying:
        if head is not None and type(propensity) is float and 0.0 < propensity <= 1.0 \
                and type(decision_id) is str and decision_id.isalnum() and len(decision_id) <= MAX_ID_LENGTH \
                and type(candidates) is tuple and (type(action) is str or type(action) is int) \
                and set(map(type, candidates)) <= _ID_TYPES:  # strings and ints only: no True equal to 1
            known = encoded.get(candidates)
            if known is None:
                known = encoded[candidates] = (_json(list(candidates), "candidates", "decision"), list(candidates))
            if action in known[1]:
                rows.append((decision_id, *head[1:8], known[0], _json(action, "action", "decision"), propensity))
                continue
        row = decision_row({**shared, "decision_id": decision_id, "candidates": candidates, "action": action,
                            "propensity": propensity})
        if head is None and shareable:
            head = row
        rows.append(row)
    return rows


_ID_TYPES = frozenset((str, int))


def feedback_row(record: Any) -> tuple[Any, ...]:
    """Validate one feedback record and return its row (see :data:`FEEDBACK_COLUMNS`)."""
    kind = "feedback"
    decision_id = check_decision_id(_get(record, "decision_id", None), kind)
    event = _label(record, "event", kind, "reward")
    if not event:
        raise ParameterError("feedback.event must be a non-empty string", parameter="event")
    reward = _finite(_required(record, "reward", kind), "reward", kind)
    return (decision_id, _timestamp(record, kind), event, reward)


def parse_time(value: Any, name: str = "since") -> float | None:
    """Seconds since the epoch from ``None``, a number, a :class:`datetime` or a string.

    A string is either a number (epoch seconds) or an ISO 8601 date or time;
    a time without a zone is taken as UTC.

    Examples
    --------
    >>> parse_time("1970-01-02")
    86400.0
    >>> parse_time("86400")
    86400.0
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ParameterError(
                f"{name} must be an ISO 8601 time or epoch seconds, not {value!r}", parameter=name
            ) from None
    else:
        raise ParameterError(f"{name} must be an ISO 8601 time or epoch seconds, not {value!r}", parameter=name)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
