"""Data contracts of contextual bandits: one :class:`Decision`, and a log of them as :class:`LoggedFeedback`.

Both check shapes, dtypes and values when built and name the field at fault,
so an estimator or a policy never meets a propensity of 0, a NaN reward or an
action outside the candidates.

A round ``i`` of a log has a context ``context[i]`` (``d`` features), the
actions that were available (all ``n_actions``, or those where
``candidates[i]`` is true), the chosen ``action[i]``, the logging policy's
probability of that choice ``propensity[i]`` (in (0, 1]), the observed
``reward[i]``, and optionally the slot ``position[i]`` when a page shows
several. Action features are either shared by every round
(``action_features`` of shape ``(n_actions, k)``, as Open Bandit's item
context) or per round (``(n, n_actions, k)``, as artwork variants that differ
by title).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matinee.errors import ParameterError


@dataclass(frozen=True)
class Decision:
    """One decision as served and logged: who, what was offered, what was chosen, with what probability."""

    decision_id: str
    ts: float
    unit_id: str
    context: np.ndarray
    candidates: list[Any]
    action: Any
    propensity: float
    endpoint: str = "artwork"
    model: str = ""
    model_version: int | None = None
    arm: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < float(self.propensity) <= 1.0:
            raise ParameterError(
                f"Decision.propensity must be in (0, 1], not {self.propensity!r}", parameter="propensity"
            )
        if self.action not in self.candidates:
            raise ParameterError(
                f"Decision.action {self.action!r} is not one of the candidates", parameter="action"
            )
        object.__setattr__(self, "context", np.asarray(self.context, dtype=np.float64))


@dataclass(frozen=True, eq=False)
class LoggedFeedback:
    """A log of ``n`` bandit rounds; see the module docstring for the fields.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> log = LoggedFeedback(context=np.zeros((3, 2)), action=[0, 1, 1], reward=[1, 0, 1],
    ...                      propensity=[0.5, 0.5, 0.5], n_actions=2)
    >>> len(log), log.n_actions
    (3, 2)
    >>> LoggedFeedback(context=np.zeros((1, 2)), action=[0], reward=[1], propensity=[0.0], n_actions=2)
    Traceback (most recent call last):
    ...
    matinee.errors.ParameterError: LoggedFeedback.propensity must be in (0, 1]; round 0 has 0.0
    """

    context: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    propensity: np.ndarray
    n_actions: int
    action_features: np.ndarray | None = None
    candidates: np.ndarray | None = None
    position: np.ndarray | None = None
    timestamp: np.ndarray | None = None
    unit_id: np.ndarray | None = None
    item_id: np.ndarray | None = None
    policy: str = ""
    policy_version: str = ""
    expected_reward: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = _set(self, "action", _ints(self.action, "action"))
        _set(self, "reward", _floats(self.reward, "reward", n))
        _set(self, "propensity", _floats(self.propensity, "propensity", n))
        context = np.asarray(self.context, dtype=np.float64)
        if context.ndim == 1:
            context = context.reshape(n, -1) if len(context) == n else context
        if context.ndim != 2 or len(context) != n:
            raise ParameterError(
                f"LoggedFeedback.context must have shape (n, d) with n = {n} rounds, not {context.shape}",
                parameter="context",
            )
        _set(self, "context", _finite(context, "context"))
        if isinstance(self.n_actions, bool) or not isinstance(self.n_actions, (int, np.integer)) or self.n_actions < 1:
            raise ParameterError(f"LoggedFeedback.n_actions must be a positive whole number, not {self.n_actions!r}",
                                 parameter="n_actions")
        bad = (self.action < 0) | (self.action >= self.n_actions)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ParameterError(
                f"LoggedFeedback.action has unknown action {int(self.action[i])} at round {i} "
                f"(actions are 0..{self.n_actions - 1})",
                parameter="action",
            )
        outside = ~((self.propensity > 0) & (self.propensity <= 1))
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise ParameterError(
                f"LoggedFeedback.propensity must be in (0, 1]; round {i} has {float(self.propensity[i])}",
                parameter="propensity",
            )
        if self.candidates is not None:
            mask = np.asarray(self.candidates, dtype=bool)
            if mask.shape != (n, self.n_actions):
                raise ParameterError(
                    f"LoggedFeedback.candidates must have shape ({n}, {self.n_actions}), not {mask.shape}",
                    parameter="candidates",
                )
            chosen = mask[np.arange(n), self.action]
            if not chosen.all():
                i = int(np.flatnonzero(~chosen)[0])
                raise ParameterError(f"LoggedFeedback.action at round {i} is not among that round's candidates",
                                     parameter="action")
            _set(self, "candidates", mask)
        if self.action_features is not None:
            feats = _finite(np.asarray(self.action_features, dtype=np.float64), "action_features")
            shared = feats.ndim == 2 and feats.shape[0] == self.n_actions
            per_round = feats.ndim == 3 and feats.shape[:2] == (n, self.n_actions)
            if not (shared or per_round):
                raise ParameterError(
                    f"LoggedFeedback.action_features must have shape ({self.n_actions}, k) or "
                    f"({n}, {self.n_actions}, k), not {feats.shape}",
                    parameter="action_features",
                )
            _set(self, "action_features", feats)
        for name in ("position", "timestamp", "unit_id", "item_id", "expected_reward"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value)
                if len(value) != n:
                    raise ParameterError(f"LoggedFeedback.{name} has {len(value)} rows, action has {n}",
                                         parameter=name)
                _set(self, name, value)

    # -- shape ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.action)

    @property
    def n_features(self) -> int:
        return int(self.context.shape[1])

    def features_of(self, rows: np.ndarray | slice | None = None) -> np.ndarray | None:
        """Action features per round, ``(m, n_actions, k)``, for the rows asked (shared ones broadcast)."""
        if self.action_features is None:
            return None
        feats = self.action_features
        if feats.ndim == 2:
            m = len(self) if rows is None else len(np.arange(len(self))[rows])
            return np.broadcast_to(feats, (m, *feats.shape))
        return feats if rows is None else feats[rows]

    def subset(self, rows: np.ndarray | slice) -> LoggedFeedback:
        """The rounds selected by ``rows`` (an index array, boolean mask or slice)."""
        values: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            per_round = isinstance(value, np.ndarray) and not (
                f.name == "action_features" and value.ndim == 2
            )
            values[f.name] = value[rows] if per_round else value
        return LoggedFeedback(**values)

    # -- frames -----------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """One row per round: action, reward, propensity, the optional columns, and x0..x{d-1}."""
        out: dict[str, Any] = {"action": self.action, "reward": self.reward, "propensity": self.propensity}
        for name in ("position", "timestamp", "unit_id", "item_id"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for j in range(self.n_features):
            out[f"x{j}"] = self.context[:, j]
        return pd.DataFrame(out)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        n_actions: int | None = None,
        context_cols: list[str] | None = None,
        action_col: str = "action",
        reward_col: str = "reward",
        propensity_col: str = "propensity",
        position_col: str | None = "position",
        **extra: Any,
    ) -> LoggedFeedback:
        """Build from a frame with one row per round; context columns default to ``x0, x1, ...``."""
        for col in (action_col, reward_col, propensity_col):
            if col not in frame.columns:
                raise ParameterError(f"column {col!r} is missing; the frame has {', '.join(map(str, frame.columns))}",
                                     parameter=col)
        if context_cols is None:
            context_cols = [c for c in frame.columns if isinstance(c, str) and c[:1] == "x" and c[1:].isdigit()]
            context_cols.sort(key=lambda c: int(c[1:]))
        missing = [c for c in context_cols if c not in frame.columns]
        if missing:
            raise ParameterError(f"context column {missing[0]!r} is missing", parameter=missing[0])
        action = frame[action_col].to_numpy()
        context = frame[context_cols].to_numpy(np.float64) if context_cols else np.zeros((len(frame), 0))
        return cls(
            context=context,
            action=action,
            reward=frame[reward_col].to_numpy(),
            propensity=frame[propensity_col].to_numpy(),
            n_actions=int(n_actions if n_actions is not None else int(np.max(action)) + 1),
            position=frame[position_col].to_numpy() if position_col and position_col in frame.columns else None,
            **extra,
        )

    @classmethod
    def from_parquet(cls, path: str | Path, **kwargs: Any) -> LoggedFeedback:
        """Read a Parquet file written by :meth:`to_frame` (or with the same columns)."""
        try:
            frame = pd.read_parquet(path)
        except FileNotFoundError:
            raise ParameterError(f"no file at {path}", parameter="path") from None
        return cls.from_frame(frame, **kwargs)

    def __repr__(self) -> str:
        return (f"LoggedFeedback({len(self)} rounds, {self.n_actions} actions, {self.n_features} context features"
                f"{', policy ' + self.policy if self.policy else ''})")


def _set(obj: Any, name: str, value: Any) -> int:
    object.__setattr__(obj, name, value)
    return len(value) if hasattr(value, "__len__") else 0


def _ints(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1:
        raise ParameterError(f"LoggedFeedback.{name} must be one-dimensional, not shape {array.shape}", parameter=name)
    if array.dtype.kind not in "iu":
        if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise ParameterError(f"LoggedFeedback.{name} must hold whole numbers (action indices)", parameter=name)
    return array.astype(np.int64, copy=False)


def _floats(value: Any, name: str, n: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"LoggedFeedback.{name} must hold numbers", parameter=name) from None
    if array.shape != (n,):
        raise ParameterError(f"LoggedFeedback.{name} has shape {array.shape}; action has {n} rounds", parameter=name)
    return _finite(array, name)


def _finite(array: np.ndarray, name: str) -> np.ndarray:
    bad = ~np.isfinite(array)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise ParameterError(f"LoggedFeedback.{name} has a NaN or infinite value (at {tuple(int(i) for i in where)})",
                             parameter=name)
    return array
