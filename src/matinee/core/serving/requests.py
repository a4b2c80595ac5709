"""Request bodies of the serving endpoints, validated into small dataclasses.

Every check raises :class:`InvalidRequest` naming the offending field with a
dotted path (``titles.2.variants.0.features``), which the server answers with
422 and ``{"error", "detail", "field"}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from matinee.errors import ParameterError

__all__ = [
    "MAX_BODY",
    "ArtworkRequest",
    "FeedbackRequest",
    "InvalidRequest",
    "RecsRequest",
    "Title",
    "parse_body",
]

#: Largest request body accepted, in bytes.
MAX_BODY = 1_000_000
MAX_K = 1_000
MAX_LIST = 10_000


class InvalidRequest(ParameterError):
    """A request body that is not what the endpoint takes; ``field`` names the culprit."""

    status = 422

    def __init__(self, message: str, field: str | None, status: int = 422) -> None:
        super().__init__(message, field=field)
        self.status = status


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``."""
    if len(raw) > MAX_BODY:
        raise InvalidRequest(f"request body larger than {MAX_BODY} bytes", None, status=413)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", None, status=400) from None
    except RecursionError:
        raise InvalidRequest("request body is nested too deeply", None, status=400) from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object", None)
    return data


def _id(data: dict[str, Any], name: str, path: str) -> str | int:
    if name not in data:
        raise InvalidRequest(f"{path} is required", path)
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise InvalidRequest(f"{path} must be a non-empty string or an integer, not {value!r}", path)
    return value


def _ids(value: Any, path: str) -> list[str | int]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{path} must be a list of ids", path)
    if len(value) > MAX_LIST:
        raise InvalidRequest(f"{path} has more than {MAX_LIST} entries", path)
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise InvalidRequest(f"{path}.{i} must be a string or an integer, not {item!r}", f"{path}.{i}")
    return value


def _floats(value: Any, path: str) -> list[float]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{path} must be a list of numbers", path)
    if len(value) > MAX_LIST:
        raise InvalidRequest(f"{path} has more than {MAX_LIST} entries", path)
    for i, item in enumerate(value):
        if not _finite_number(item):
            raise InvalidRequest(f"{path}.{i} must be a finite number, not {_short(item)}", f"{path}.{i}")
    return [float(v) for v in value]


def _finite_number(item: Any) -> bool:
    """An int or float (not a bool) that is finite as a float (an integer of 400 digits is not)."""
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        return False
    try:
        return math.isfinite(item)
    except OverflowError:
        return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


_NUMBER_TYPES = frozenset((float, int))


def _all_finite(values: list[Any]) -> bool:
    """True only if every entry is a finite int or float (not a bool): ``_floats`` accepts them all.

    False means "not sure" (the sum overflowed, say); the caller then checks one by one.
    """
    if not set(map(type, values)) <= _NUMBER_TYPES:
        return False
    try:
        return math.isfinite(sum(values))  # an infinity or a NaN anywhere makes the sum one
    except OverflowError:
        return False


def _plain_id(value: Any) -> bool:
    kind = type(value)
    return (kind is str and value != "") or kind is int


def _unknown(data: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise InvalidRequest(f"unknown field {prefix}{extra[0]}", f"{prefix}{extra[0]}")


@dataclass(frozen=True)
class RecsRequest:
    """``POST /recommendations``: top-``k`` items for a member."""

    user_id: str | int
    k: int = 10
    exclude: tuple[str | int, ...] = ()
    candidates: tuple[str | int, ...] | None = None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> RecsRequest:
        _unknown(data, {"user_id", "k", "exclude", "candidates"})
        user = _id(data, "user_id", "user_id")
        k = data.get("k", 10)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InvalidRequest(f"k must be an integer from 1 to {MAX_K}, not {k!r}", "k")
        exclude = tuple(_ids(data.get("exclude", []), "exclude"))
        raw = data.get("candidates")
        candidates = None if raw is None else tuple(_ids(raw, "candidates"))
        return cls(user, k, exclude, candidates)


@dataclass(frozen=True)
class Title:
    """A title and its artwork variants: ids and their features, one row per variant."""

    title_id: str | int
    variant_ids: tuple[str | int, ...]
    features: np.ndarray  # (len(variant_ids), k) float64


@dataclass(frozen=True)
class ArtworkRequest:
    """``POST /artwork``: one variant per title for a member in a context.

    ``features`` holds every variant's features, title after title: ``(n_variants, k)``;
    each title's ``features`` are its rows of it.
    """

    user_id: str | int
    context: tuple[float, ...]
    titles: tuple[Title, ...]
    features: np.ndarray

    @classmethod
    def parse(cls, data: dict[str, Any]) -> ArtworkRequest:
        fast = cls._parse_plain(data)
        return fast if fast is not None else cls._parse_checked(data)

    @classmethod
    def _parse_plain(cls, data: dict[str, Any]) -> ArtworkRequest | None:
        """The request if it is well formed, checked in bulk; None if anything looks amiss.

        Accepts exactly what :meth:`_parse_checked` accepts, or less (then that
        method, which checks field by field and names the culprit, decides).
        """
        if not data.keys() <= _ARTWORK_FIELDS:
            return None
        user: Any = data.get("user_id")
        context = data.get("context")
        raw_titles = data.get("titles")
        if not _plain_id(user) or type(context) is not list or len(context) > MAX_LIST \
                or type(raw_titles) is not list or not raw_titles or len(raw_titles) > MAX_K:
            return None
        numbers = list(context)
        spans: list[tuple[Any, tuple[Any, ...]]] = []
        width = -1
        count = 0
        for raw in raw_titles:
            if type(raw) is not dict or not raw.keys() <= _TITLE_FIELDS:
                return None
            title_id = raw.get("title_id")
            variants = raw.get("variants")
            if not _plain_id(title_id) or type(variants) is not list or not variants or len(variants) > MAX_K:
                return None
            if not set(map(type, variants)) <= _DICT or not all(map(_VARIANT_FIELDS.issuperset, variants)):
                return None
            try:
                ids = tuple(map(_get_id, variants))
                feature_lists = list(map(_get_features, variants))
            except KeyError:  # no id, or no features (the checked parse defaults them)
                return None
            if not set(map(type, ids)) <= _ID_TYPES or "" in ids or len(set(ids)) != len(ids) \
                    or not set(map(type, feature_lists)) <= _LIST:
                return None
            lengths = set(map(len, feature_lists))
            if width < 0:
                width = len(feature_lists[0])
                if width > MAX_LIST:
                    return None
            if lengths != {width}:
                return None
            numbers.extend(chain.from_iterable(feature_lists))
            spans.append((title_id, ids))
            count += len(ids)
        if not _all_finite(numbers):
            return None
        dims = len(context)
        flat = np.array(numbers[dims:], dtype=np.float64).reshape(count, width)
        return cls(user, tuple(map(float, context)), _titles(spans, flat), flat)

    @classmethod
    def _parse_checked(cls, data: dict[str, Any]) -> ArtworkRequest:
        _unknown(data, {"user_id", "context", "titles"})
        user = _id(data, "user_id", "user_id")
        if "context" not in data:
            raise InvalidRequest("context is required", "context")
        context = tuple(_floats(data["context"], "context"))
        raw_titles = data.get("titles")
        if not isinstance(raw_titles, list) or not raw_titles:
            raise InvalidRequest("titles must be a non-empty list", "titles")
        if len(raw_titles) > MAX_K:
            raise InvalidRequest(f"titles has more than {MAX_K} entries", "titles")
        spans: list[tuple[Any, tuple[Any, ...]]] = []
        rows: list[list[float]] = []
        width: int | None = None
        for i, raw in enumerate(raw_titles):
            path = f"titles.{i}"
            if not isinstance(raw, dict):
                raise InvalidRequest(f"{path} must be an object", path)
            _unknown(raw, {"title_id", "variants"}, f"{path}.")
            title_id = _id(raw, "title_id", f"{path}.title_id")
            variants = raw.get("variants")
            if not isinstance(variants, list) or not variants:
                raise InvalidRequest(f"{path}.variants must be a non-empty list", f"{path}.variants")
            if len(variants) > MAX_K:
                raise InvalidRequest(f"{path}.variants has more than {MAX_K} entries", f"{path}.variants")
            ids: list[str | int] = []
            for j, variant in enumerate(variants):
                vpath = f"{path}.variants.{j}"
                if not isinstance(variant, dict):
                    raise InvalidRequest(f"{vpath} must be an object", vpath)
                _unknown(variant, {"id", "features"}, f"{vpath}.")
                vid = _id(variant, "id", f"{vpath}.id")
                if vid in ids:
                    raise InvalidRequest(f"{vpath}.id {vid!r} is repeated", f"{vpath}.id")
                feature = _floats(variant.get("features", []), f"{vpath}.features")
                if width is None:
                    width = len(feature)
                elif len(feature) != width:
                    raise InvalidRequest(f"{vpath}.features has {len(feature)} numbers; other variants have {width}",
                                         f"{vpath}.features")
                ids.append(vid)
                rows.append(feature)
            spans.append((title_id, tuple(ids)))
        flat = np.array(rows, dtype=np.float64).reshape(len(rows), width or 0)
        return cls(user, context, _titles(spans, flat), flat)


def _titles(spans: list[tuple[Any, tuple[Any, ...]]], flat: np.ndarray) -> tuple[Title, ...]:
    """The titles of a request: each ``(title_id, variant ids)`` span with its rows of ``flat``."""
    titles = []
    start = 0
    for title_id, variant_ids in spans:
        stop = start + len(variant_ids)
        titles.append(Title(title_id, variant_ids, flat[start:stop]))
        start = stop
    return tuple(titles)


_ARTWORK_FIELDS = frozenset(("user_id", "context", "titles"))
_DICT = frozenset((dict,))
_LIST = frozenset((list,))
_ID_TYPES = frozenset((str, int))
_get_id = itemgetter("id")
_get_features = itemgetter("features")
_TITLE_FIELDS = frozenset(("title_id", "variants"))
_VARIANT_FIELDS = frozenset(("id", "features"))


@dataclass(frozen=True)
class FeedbackRequest:
    """``POST /feedback``: what happened after a decision."""

    decision_id: str
    event: str
    reward: float

    @classmethod
    def parse(cls, data: dict[str, Any]) -> FeedbackRequest:
        _unknown(data, {"decision_id", "event", "reward"})
        decision_id = data.get("decision_id")
        if not isinstance(decision_id, str) or not decision_id:
            raise InvalidRequest("decision_id must be a non-empty string", "decision_id")
        event = data.get("event", "reward")
        if not isinstance(event, str) or not event or len(event) > 100:
            raise InvalidRequest("event must be a non-empty string of at most 100 characters", "event")
        if "reward" not in data:
            raise InvalidRequest("reward is required", "reward")
        reward = data["reward"]
        if not _finite_number(reward):
            raise InvalidRequest(f"reward must be a finite number, not {_short(reward)}", "reward")
        return cls(decision_id, event, float(reward))
