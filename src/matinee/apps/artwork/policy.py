"""``Policy``: the one base class of contextual-bandit policies.

A policy is batch-first. For ``n`` rounds with contexts ``(n, d)``, optional
action features (``(n_actions, k)`` shared or ``(n, n_actions, k)`` per round)
and an optional candidates mask ``(n, n_actions)``:

``probabilities(...)``
    the policy's action distribution ``(n, n_actions)``: each row sums to 1 and
    is 0 exactly on the actions that are not candidates. Exact in closed form
    where one exists; a documented Monte Carlo estimate otherwise (Thompson
    sampling). Off-policy estimators use it as the evaluation policy.
``choose(...)``
    draws one action per round and returns it with its propensity, the
    probability the policy gave it (never 0).
``update(feedback)``
    learns from a :class:`~matinee.apps.artwork.data.LoggedFeedback` batch.

Subclasses implement ``_probabilities`` (and may override ``choose`` to sample
without computing the whole distribution, as long as the propensity they
return is the probability of the action chosen). ``__init__`` only stores
hyperparameters; learned state lives in ``name_`` attributes; randomness comes
from ``random_state``; policies pickle, so a flow stores them as artifacts.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from matinee.apps.artwork.data import LoggedFeedback
from matinee.errors import ParameterError


@dataclass(frozen=True)
class Choice:
    """The actions a policy chose, one per round, with their propensities."""

    actions: np.ndarray
    propensities: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)


class Policy:
    """Base class of matinee's bandit policies; see the module docstring for the contract."""

    #: Whether ``probabilities`` is exact (False for Monte Carlo estimates).
    exact_propensities = True
    #: Whether the policy plays the best-scoring candidate (ties split evenly) rather than
    #: randomising: then the candidates it would not play have probability 0.
    deterministic = False

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Policy:
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ParameterError(f"{type(self).__name__} has no hyperparameter {name!r}; it has {', '.join(valid)}",
                                     parameter=name)
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # -- the contract -------------------------------------------------------------
    def probabilities(
        self, context: np.ndarray, action_features: np.ndarray | None = None, candidates: np.ndarray | None = None
    ) -> np.ndarray:
        """The action distribution for each round, ``(n, n_actions)``."""
        context = _context(context)
        mask = None if candidates is None else _candidates(candidates, len(context))
        probs = np.asarray(self._probabilities(context, action_features, mask), dtype=np.float64)
        if mask is not None:
            if probs.shape != mask.shape:
                raise ParameterError(f"candidates has shape {mask.shape}; the policy has {probs.shape[1]} actions",
                                     parameter="candidates")
            probs = np.where(mask, probs, 0.0)
            probs /= probs.sum(axis=1, keepdims=True)
        return probs

    def choose(
        self, context: np.ndarray, action_features: np.ndarray | None = None, candidates: np.ndarray | None = None
    ) -> Choice:
        """Draw one action per round from :meth:`probabilities`; returns actions and propensities."""
        probs = self.probabilities(context, action_features, candidates)
        rng = self._rng()
        cumulative = probs.cumsum(axis=1)
        draws = rng.random((len(probs), 1)) * cumulative[:, -1:]
        actions = np.minimum((cumulative <= draws).sum(axis=1), probs.shape[1] - 1)
        return Choice(actions, probs[np.arange(len(probs)), actions])

    def update(self, feedback: LoggedFeedback) -> Policy:
        """Learn from a batch of logged feedback; returns ``self``."""
        if not isinstance(feedback, LoggedFeedback):
            raise ParameterError(f"update takes LoggedFeedback, not {type(feedback).__name__}", parameter="feedback")
        self._update(feedback)
        return self

    def learn(
        self,
        context: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        propensity: np.ndarray,
        action_features: np.ndarray | None = None,
        candidates: np.ndarray | None = None,
    ) -> Policy:
        """Learn from rounds given as plain arrays, as a server learning online does; returns ``self``.

        The same as :meth:`update` with a :class:`LoggedFeedback` of these fields;
        the number of actions comes from ``candidates``, ``action_features`` or
        what the policy already learned.

        Examples
        --------
        >>> import numpy as np
        >>> from matinee.apps.artwork.policies import EpsilonGreedy
        >>> policy = EpsilonGreedy(epsilon=0.1, n_actions=2, random_state=0)
        >>> policy = policy.learn(np.zeros((2, 1)), [0, 1], [1.0, 0.0], [0.5, 0.5])
        >>> policy.probabilities(np.zeros((1, 1))).round(2).tolist()
        [[0.95, 0.05]]
        """
        if candidates is not None:
            n_actions = np.shape(candidates)[-1]
        elif action_features is not None:
            n_actions = np.shape(action_features)[-2]
        else:
            n_actions = getattr(self, "n_actions_", None) or getattr(self, "n_actions", None)
            if n_actions is None:
                raise ParameterError(f"{type(self).__name__} cannot tell how many actions there are: pass "
                                     "candidates or action_features", parameter="candidates")
        feedback = LoggedFeedback(context=context, action=action, reward=reward, propensity=propensity,
                                  n_actions=int(n_actions), action_features=action_features, candidates=candidates)
        return self.update(feedback)

    def _probabilities(self, context: np.ndarray, action_features: np.ndarray | None,
                       candidates: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def _update(self, feedback: LoggedFeedback) -> None:
        raise NotImplementedError

    def _rng(self) -> np.random.Generator:
        rng = getattr(self, "rng_", None)
        if rng is None:
            rng = np.random.default_rng(getattr(self, "random_state", None))
            self.rng_ = rng
        return rng


def _candidates(candidates: Any, n: int) -> np.ndarray:
    mask = np.asarray(candidates)
    if mask.ndim != 2 or len(mask) != n:
        raise ParameterError(f"candidates must have shape ({n}, n_actions), not {mask.shape}", parameter="candidates")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise ParameterError("candidates must be a boolean mask (or 0/1)", parameter="candidates")
        mask = mask.astype(bool)
    empty = ~mask.any(axis=1)
    if empty.any():
        raise ParameterError(f"round {int(np.flatnonzero(empty)[0])} has no candidate action", parameter="candidates")
    return mask


def _context(context: Any) -> np.ndarray:
    array = np.asarray(context, dtype=np.float64)
    if array.ndim != 2:
        raise ParameterError(f"context must have shape (n, d), not {array.shape}", parameter="context")
    if not np.isfinite(array).all():
        raise ParameterError("context has a NaN or infinite value", parameter="context")
    return array
