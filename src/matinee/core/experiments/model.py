"""What an experiment is: arms bound to aliases of one model, their weights, the salt, the metrics.

An :class:`Experiment` is plain, validated data; :mod:`matinee.core.experiments.store`
keeps it in the metadata database. Assignment is serving's own
:func:`~matinee.core.serving.config.assign_arm` on ``(salt, member)`` with the
arms' weights as the split, so the arm an experiment expects for a member is
the arm the server answers with, by construction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from matinee.errors import ParameterError

__all__ = ["KINDS", "METRICS", "STATUSES", "Arm", "Experiment", "Metric", "parse_arm"]

#: ``ab``: members split between arms by weight. ``interleaving``: every member sees both rankers in one list.
KINDS = ("ab", "interleaving")
#: An experiment is created as a ``draft``, then ``running`` from ``start`` and ``stopped`` from ``stop``.
STATUSES = ("draft", "running", "stopped")
UNITS = ("member",)
ENDPOINTS = ("recs", "artwork")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


@dataclass(frozen=True)
class Metric:
    """A per-member metric computed from the event log over the experiment's window.

    ``kind`` is ``"ratio"`` (``sum(numerator) / sum(denominator)`` per arm, delta
    method) or ``"mean"`` (the per-member ``numerator`` averaged over members).
    """

    name: str
    kind: str
    numerator: str
    denominator: str | None
    description: str


#: The metrics an experiment can name. Per member and window: ``impressions`` are
#: exposures (decisions served), ``plays`` the play events (``play`` or ``play:ITEM``)
#: of those decisions, ``reward`` the summed feedback rewards.
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("take_rate", "ratio", "plays", "impressions", "plays / impressions (delta method)"),
    Metric("plays_per_member", "mean", "plays", None, "play events per exposed member"),
    Metric("reward_per_member", "mean", "reward", None, "summed feedback reward per exposed member"),
    Metric("reward_per_impression", "ratio", "reward", "impressions", "reward / impressions (delta method)"),
    Metric("impressions_per_member", "mean", "impressions", None, "exposures per member (a guardrail)"),
    Metric("play_member_rate", "mean", "played", None, "share of exposed members with at least one play"),
)}


def check_name(name: Any) -> str:
    """Refuse an experiment name that is empty or holds spaces, ``@`` or ``/``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ParameterError(f"invalid experiment name {name!r}: use letters, digits, '_', '-' and '.', "
                             "starting with a letter or digit", parameter="name")
    return name


@dataclass(frozen=True)
class Arm:
    """One arm: an alias of the experiment's model and the share of members it gets.

    Its name is the alias, because that is what the server logs as a decision's ``arm``.
    """

    alias: str
    weight: float

    def as_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "weight": self.weight}


def parse_arm(text: str) -> tuple[str, str, float | None]:
    """``"model@alias=0.5"`` (or ``"model@alias"``) as ``(model, alias, weight or None)``.

    Examples
    --------
    >>> parse_arm("ranker@challenger=0.1")
    ('ranker', 'challenger', 0.1)
    """
    ref, _, weight_text = text.partition("=")
    model, at, alias = ref.strip().partition("@")
    if not at or not model or not alias:
        raise ParameterError(f"an arm is MODEL@ALIAS[=WEIGHT], not {text!r}", parameter="arms")
    weight: float | None = None
    if weight_text.strip():
        try:
            weight = float(weight_text)
        except ValueError:
            raise ParameterError(f"the weight of arm {ref.strip()!r} must be a number, not {weight_text!r}",
                                 parameter="weights") from None
    return model, alias.strip(), weight


@dataclass(frozen=True)
class Experiment:
    """An online experiment.

    Parameters
    ----------
    name
        Unique; letters, digits, ``_``, ``-`` and ``.``.
    model
        The registered model whose aliases the arms are.
    arms
        The arms, control first. For ``kind="ab"`` their weights sum to 1; an
        interleaving experiment has exactly two (``a`` = control, ``b`` = treatment).
    endpoint
        The serving endpoint whose decisions are the exposures (``recs`` or ``artwork``).
    kind
        ``"ab"`` or ``"interleaving"``.
    salt
        Mixed into the assignment hash (default: the experiment's name). The
        server's endpoint must use the same salt and split: see :meth:`endpoint_config`.
    primary_metric, guardrails
        Names from :data:`METRICS`.
    unit
        The unit of randomisation and analysis: ``member`` (the decision's ``unit_id``).
    owner, description
        Who is responsible, and what the experiment tests.
    alpha
        Significance level of the analysis.
    status, created_at, started_at, stopped_at
        The lifecycle (set by the store).

    Raises
    ------
    ParameterError
        Any malformed field; the message names it.
    """

    name: str
    model: str
    arms: tuple[Arm, ...]
    endpoint: str = "recs"
    kind: str = "ab"
    salt: str = ""
    primary_metric: str = "take_rate"
    guardrails: tuple[str, ...] = ()
    unit: str = "member"
    owner: str = ""
    description: str = ""
    alpha: float = 0.05
    status: str = "draft"
    created_at: float | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name(self.name)
        if not self.salt:
            object.__setattr__(self, "salt", self.name)
        _choice(self.kind, KINDS, "kind")
        _choice(self.endpoint, ENDPOINTS, "endpoint")
        _choice(self.unit, UNITS, "unit")
        _choice(self.status, STATUSES, "status")
        if not isinstance(self.model, str) or not self.model or "@" in self.model:
            raise ParameterError(f"model must be a registered model's name, not {self.model!r}", parameter="model")
        if not isinstance(self.salt, str):
            raise ParameterError(f"salt must be a string, not {self.salt!r}", parameter="salt")
        arms = tuple(self.arms)
        object.__setattr__(self, "arms", arms)
        if len(arms) < 2:
            raise ParameterError(f"an experiment needs at least two arms, not {len(arms)}", parameter="arms")
        seen: set[str] = set()
        for arm in arms:
            if not isinstance(arm, Arm):
                raise ParameterError(f"arms must be Arm objects, not {arm!r}", parameter="arms")
            if not isinstance(arm.alias, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_.\-]{0,254}$", arm.alias):
                raise ParameterError(f"invalid arm alias {arm.alias!r}", parameter="arms")
            if arm.alias in seen:
                raise ParameterError(f"arms overlap: alias {arm.alias!r} is in more than one arm", parameter="arms")
            seen.add(arm.alias)
            w = arm.weight
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 0 < w <= 1:
                raise ParameterError(f"the weight of arm {arm.alias!r} must be in (0, 1], not {w!r}",
                                     parameter="weights")
        total = sum(float(a.weight) for a in arms)
        if abs(total - 1.0) > 1e-6:
            raise ParameterError(f"arm weights must sum to 1, not {total:g}", parameter="weights")
        if self.kind == "interleaving":
            if len(arms) != 2:
                raise ParameterError(f"an interleaving experiment compares exactly two arms, not {len(arms)}",
                                     parameter="arms")
            if self.endpoint != "recs":
                raise ParameterError("interleaving compares rankers: its endpoint must be 'recs'",
                                     parameter="endpoint")
        guardrails = tuple(self.guardrails)
        object.__setattr__(self, "guardrails", guardrails)
        for metric, field_name in [(self.primary_metric, "primary_metric"), *((g, "guardrails") for g in guardrails)]:
            if self.kind == "ab" and metric not in METRICS:
                raise ParameterError(f"unknown metric {metric!r} in {field_name}: choose from "
                                     f"{', '.join(METRICS)}", parameter=field_name)
        if self.kind == "interleaving" and self.primary_metric not in ("preference", "take_rate"):
            raise ParameterError("an interleaving experiment's primary metric is 'preference'",
                                 parameter="primary_metric")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 < self.alpha < 0.5:
            raise ParameterError(f"alpha must be between 0 and 0.5, not {self.alpha!r}", parameter="alpha")
        for text, field_name in ((self.owner, "owner"), (self.description, "description")):
            if not isinstance(text, str):
                raise ParameterError(f"{field_name} must be a string, not {text!r}", parameter=field_name)

    # -- derived -------------------------------------------------------------------------
    @property
    def control(self) -> str:
        """The control arm's alias (the first arm)."""
        return self.arms[0].alias

    @property
    def aliases(self) -> list[str]:
        """Every arm's alias, control first."""
        return [a.alias for a in self.arms]

    @property
    def weights(self) -> dict[str, float]:
        """Each arm's share of members."""
        return {a.alias: float(a.weight) for a in self.arms}

    @property
    def split(self) -> dict[str, float]:
        """The arms as a serving traffic split (percentages)."""
        return {a.alias: float(a.weight) * 100.0 for a in self.arms}

    @property
    def interleaved_arm(self) -> str:
        """The ``arm`` an interleaved decision of this experiment is logged with: ``"A+B"``."""
        return "+".join(self.aliases)

    def assign(self, member: Any) -> str:
        """The arm (alias) of ``member``: serving's own hash of ``(salt, member)`` over the weights.

        Examples
        --------
        >>> e = Experiment("e1", "ranker", (Arm("champion", 0.5), Arm("challenger", 0.5)))
        >>> e.assign(42) == e.assign(42), e.assign(42) in e.aliases
        (True, True)
        """
        from matinee.core.serving.config import assign_arm

        return assign_arm(self.salt, member, self.split)

    def endpoint_config(self) -> dict[str, Any]:
        """The deployment table that serves this experiment: ``{"model", "split", "salt"}``.

        Put it under ``[recs]`` (or ``[artwork]``) of the deployment file; the
        server then assigns members exactly as :meth:`assign` does.
        """
        return {"model": f"{self.model}@{self.control}", "split": self.split, "salt": self.salt}

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        data = asdict(self)
        data["arms"] = [a.as_dict() for a in self.arms]
        data["guardrails"] = list(self.guardrails)
        data["control"] = self.control
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Experiment:
        """The experiment :meth:`as_dict` wrote (checked like any other).

        Raises
        ------
        ParameterError
            A field is missing or malformed; the message names it.
        """
        if not isinstance(data, Mapping):
            raise ParameterError("an experiment must be a JSON object", parameter="experiment")
        arms = data.get("arms")
        if not isinstance(arms, list) or not all(isinstance(a, Mapping) for a in arms):
            raise ParameterError("arms must be a list of {alias, weight} objects", parameter="arms")
        for required in ("name", "model"):
            if not isinstance(data.get(required), str):
                raise ParameterError(f"{required} is required, as a string", parameter=required)
        known = {f.name for f in dataclass_fields(cls)} - {"arms"}
        unknown = sorted(set(data) - known - {"arms", "control"})
        if unknown:
            raise ParameterError(f"unknown experiment field {unknown[0]!r}", parameter=str(unknown[0]))
        values = {k: data[k] for k in known if k in data and data[k] is not None}
        if isinstance(values.get("guardrails"), list):
            values["guardrails"] = tuple(values["guardrails"])
        if "extra" in values and not isinstance(values["extra"], dict):
            raise ParameterError("extra must be a JSON object", parameter="extra")
        return cls(arms=tuple(Arm(a.get("alias"), a.get("weight")) for a in arms), **values)

    @classmethod
    def build(cls, name: str, arms: Sequence[str] | Mapping[str, float], **fields: Any) -> Experiment:
        """An experiment from arm references: ``["ranker@champion=0.5", "ranker@challenger=0.5"]``
        or ``{"ranker@champion": 0.5, ...}``; weights left out share what the others leave.

        Raises
        ------
        ParameterError
            Arms of different models, a malformed reference or weight.
        """
        parsed: list[tuple[str, str, float | None]]
        if isinstance(arms, Mapping):
            parsed = [(*parse_arm(ref)[:2], None if w is None else float(w)) for ref, w in arms.items()]
        elif isinstance(arms, str) or not isinstance(arms, Sequence):
            raise ParameterError("arms must be a list of 'MODEL@ALIAS[=WEIGHT]'", parameter="arms")
        else:
            parsed = [parse_arm(ref) for ref in arms]
        if len(parsed) < 2:
            raise ParameterError(f"an experiment needs at least two arms, not {len(parsed)}", parameter="arms")
        models = sorted({m for m, _, _ in parsed})
        if len(models) > 1:
            raise ParameterError(f"every arm must be an alias of one model, not of {', '.join(models)}",
                                 parameter="arms")
        given = sum(w for _, _, w in parsed if w is not None)
        missing = [alias for _, alias, w in parsed if w is None]
        share = (1.0 - given) / len(missing) if missing else 0.0
        built = tuple(Arm(alias, share if w is None else w) for _, alias, w in parsed)
        return cls(name=name, model=models[0] if models else "", arms=built, **fields)


def _choice(value: Any, allowed: Sequence[str], name: str) -> None:
    if value not in allowed:
        raise ParameterError(f"{name} must be one of {', '.join(allowed)}, not {value!r}", parameter=name)
