"""Deployment configuration: which model answers which endpoint, and how traffic is split.

A deployment binds the ``recs`` and ``artwork`` endpoints to registered models
(``"name@alias"``). An endpoint may split its traffic between aliases of the
same model by percentage; a member's arm is a hash of ``(salt, member id)``, so
a member always sees the same arm while the split and the salt stay the same.

A TOML file holds the same fields::

    poll_interval = 2.0

    [recs]
    model = "ranker@champion"

    [artwork]
    model = "artwork@champion"
    salt = "artwork-2026-11"
    split = { champion = 90, challenger = 10 }

Top-level fields besides ``poll_interval``: ``event_log``, ``durability``,
``max_in_flight``, ``learn``, ``learn_batch`` and ``snapshot_interval`` (see
:class:`Deployment`).
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matinee.errors import ConfigError

__all__ = ["ENDPOINTS", "Deployment", "Endpoint", "assign_arm", "load_deployment"]

#: The endpoints a deployment can bind to a model.
ENDPOINTS = ("recs", "artwork")

_BUCKETS = 10_000


@dataclass(frozen=True)
class Endpoint:
    """One endpoint's model and, optionally, its traffic split.

    Parameters
    ----------
    model
        ``"name@alias"``: the model and the alias that answers when there is no split.
    split
        Aliases of the same model and their percentage of members (summing to 100).
    salt
        Mixed into the assignment hash; change it to reshuffle members between arms.
    interleave
        Two aliases of the same model whose rankings every member gets interleaved
        by team draft in one list (``recs`` only; instead of a split). The list is
        logged with arm ``"A+B"``, for an interleaving experiment to analyse.

    Raises
    ------
    ConfigError
        A malformed model reference or split; the message names the field.
    """

    model: str
    split: Mapping[str, float] = field(default_factory=dict)
    salt: str = ""
    interleave: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.interleave is not None:
            pair = self.interleave
            if isinstance(pair, str) or not isinstance(pair, (list, tuple)) or len(pair) != 2 \
                    or not all(isinstance(a, str) and a for a in pair) or pair[0] == pair[1]:
                raise ConfigError(f"interleave must name two different aliases, not {pair!r}", field="interleave")
            if self.split:
                raise ConfigError("an endpoint either splits members between aliases or interleaves two, not both",
                                  field="interleave")
            object.__setattr__(self, "interleave", tuple(pair))
        if not isinstance(self.model, str) or self.model.count("@") != 1 or not all(self.model.split("@")):
            raise ConfigError(f"model must be 'NAME@ALIAS', not {self.model!r}", field="model")
        if not isinstance(self.salt, str):
            raise ConfigError(f"salt must be a string, not {self.salt!r}", field="salt")
        if not isinstance(self.split, Mapping):
            raise ConfigError("split must map aliases to percentages", field="split")
        total = 0.0
        for alias, share in self.split.items():
            if not isinstance(alias, str) or not alias:
                raise ConfigError(f"split alias {alias!r} must be a non-empty string", field="split")
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 100:
                raise ConfigError(f"split share of {alias!r} must be a number from 0 to 100, not {share!r}",
                                  field="split")
            total += float(share)
        if self.split and abs(total - 100.0) > 1e-6:
            raise ConfigError(f"split shares must sum to 100, not {total:g}", field="split")

    @property
    def name(self) -> str:
        """The model's name."""
        return self.model.split("@")[0]

    @property
    def alias(self) -> str:
        """The alias that answers when there is no split."""
        return self.model.split("@")[1]

    @property
    def aliases(self) -> list[str]:
        """Every alias this endpoint may call: the split's arms, the interleaved pair, or the one alias."""
        if self.interleave:
            return list(self.interleave)
        return list(self.split) if self.split else [self.alias]

    def arm(self, member: Any) -> str:
        """The alias that answers ``member``."""
        if not self.split:
            return self.alias
        return assign_arm(self.salt, member, self.split)


def assign_arm(salt: str, member: Any, split: Mapping[str, float]) -> str:
    """The arm of ``member``: a hash of ``(salt, member)`` placed on the split's cumulative shares.

    Examples
    --------
    >>> assign_arm("s", 42, {"a": 50, "b": 50}) == assign_arm("s", 42, {"a": 50, "b": 50})
    True
    >>> assign_arm("s", 42, {"a": 100, "b": 0})
    'a'
    """
    digest = hashlib.blake2b(f"{salt}\x00{member}".encode(), digest_size=8).digest()
    bucket = int.from_bytes(digest, "big") % _BUCKETS
    upto = 0.0
    arms = list(split.items())
    for arm, share in arms:
        upto += float(share) * _BUCKETS / 100.0
        if bucket < upto:
            return arm
    return next((arm for arm, share in reversed(arms) if share > 0), arms[-1][0])


@dataclass(frozen=True)
class Deployment:
    """What a server serves.

    Parameters
    ----------
    recs, artwork
        The endpoints' models (either may be ``None``: that endpoint answers 404).
    poll_interval
        Seconds between checks of the registry for moved aliases.
    event_log
        The decision and feedback log's file; default ``<MATINEE_HOME>/events/events.db``.
    durability
        The event log's durability, ``"relaxed"`` or ``"strict"``.
    max_in_flight
        Requests handled at once beyond which a ``POST`` endpoint answers 503 with
        ``Retry-After`` at once instead of queueing without bound.
    learn
        Let the artwork policy learn online from feedback (it must have a ``learn`` method).
    learn_batch
        Rounds of feedback per online update.
    snapshot_interval
        Seconds between snapshots of a policy that learned to the registry, as a
        new version its alias then points at; 0 snapshots only at shutdown.

    Examples
    --------
    >>> d = Deployment(recs=Endpoint("ranker@champion"))
    >>> d.recs.name, d.recs.alias, d.poll_interval
    ('ranker', 'champion', 2.0)
    """

    recs: Endpoint | None = None
    artwork: Endpoint | None = None
    poll_interval: float = 2.0
    event_log: str | None = None
    durability: str = "relaxed"
    max_in_flight: int = 256
    learn: bool = False
    learn_batch: int = 64
    snapshot_interval: float = 30.0

    def __post_init__(self) -> None:
        _number(self.poll_interval, "poll_interval", minimum=0, strict=True)
        _number(self.snapshot_interval, "snapshot_interval", minimum=0)
        _integer(self.max_in_flight, "max_in_flight")
        _integer(self.learn_batch, "learn_batch")
        if not isinstance(self.learn, bool):
            raise ConfigError(f"learn must be true or false, not {self.learn!r}", field="learn")
        if self.durability not in ("relaxed", "strict"):
            raise ConfigError(f"durability must be 'relaxed' or 'strict', not {self.durability!r}",
                              field="durability")
        if self.event_log is not None and not isinstance(self.event_log, str):
            raise ConfigError(f"event_log must be a file path, not {self.event_log!r}", field="event_log")
        if self.recs is None and self.artwork is None:
            raise ConfigError("a deployment needs a recs or an artwork model", field="recs")

    def endpoints(self) -> dict[str, Endpoint]:
        """The bound endpoints by name."""
        return {name: ep for name in ENDPOINTS if (ep := getattr(self, name)) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deployment:
        """Build from plain data (a parsed TOML file)."""
        known = {*ENDPOINTS, *_SCALARS}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown deployment field(s): {', '.join(unknown)}", field=unknown[0])
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k not in ENDPOINTS}
        for name in ENDPOINTS:
            table = data.get(name)
            if table is None:
                continue
            if isinstance(table, str):
                table = {"model": table}
            if not isinstance(table, Mapping) or "model" not in table:
                raise ConfigError(f"[{name}] needs model = 'NAME@ALIAS'", field=name)
            extra = sorted(set(table) - {"model", "split", "salt", "interleave"})
            if extra:
                raise ConfigError(f"unknown field(s) in [{name}]: {', '.join(extra)}", field=extra[0])
            if "interleave" in table and name != "recs":
                raise ConfigError("interleave is for the recs endpoint (rankers)", field="interleave")
            pair = table.get("interleave")
            kwargs[name] = Endpoint(table["model"], dict(table.get("split", {})), table.get("salt", ""),
                                    tuple(pair) if isinstance(pair, list) else pair)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` turns back into this deployment."""
        data: dict[str, Any] = {name: getattr(self, name) for name in _SCALARS if getattr(self, name) is not None}
        for name, ep in self.endpoints().items():
            data[name] = {"model": ep.model, "split": dict(ep.split), "salt": ep.salt}
            if ep.interleave:
                data[name]["interleave"] = list(ep.interleave)
        return data


_SCALARS = ("poll_interval", "event_log", "durability", "max_in_flight", "learn", "learn_batch", "snapshot_interval")


def _number(value: Any, name: str, minimum: float, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < minimum or (strict and value == minimum):
        kind = "a positive number" if strict else f"a number >= {minimum:g}"
        raise ConfigError(f"{name} must be {kind}, not {value!r}", field=name)


def _integer(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, not {value!r}", field=name)


def load_deployment(path: str | Path) -> Deployment:
    """Read a deployment from a TOML file (see the module docstring).

    Raises
    ------
    ConfigError
        The file cannot be read or describes no valid deployment.
    """
    path = Path(path)
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read deployment file {path}: {exc}", path=str(path)) from exc
    return Deployment.from_dict(data)
