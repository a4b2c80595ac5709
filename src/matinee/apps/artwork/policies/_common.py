"""What matinee's policies share: hyperparameter and input checks, shapes learned on first use, ridge algebra.

A policy learns its shapes from the first call (``probabilities``, ``choose``
or ``update``): the context width, the number of actions (the ``n_actions``
hyperparameter, else the action features, the candidates mask or the
feedback) and, for policies that model the actions, the action-feature width.
Later calls must agree with them; a mismatch raises ``ParameterError`` naming
the input at fault.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, NamedTuple

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular

from matinee.apps.artwork.data import LoggedFeedback
from matinee.apps.artwork.features import joint_features, n_joint_features
from matinee.apps.artwork.policy import Policy, _candidates, _context
from matinee.errors import ParameterError

#: The base class's checks of the context and the candidates mask, for policies that override ``choose``.
check_context = _context
check_candidates = _candidates

#: Scores within this relative distance of a round's best count as tied with it.
TIE_RTOL = 1e-12


class Rounds(NamedTuple):
    """Validated inputs of ``probabilities`` / ``choose``."""

    context: np.ndarray  # (n, d)
    features: np.ndarray | None  # (n_actions, k) or (n, n_actions, k), or None
    mask: np.ndarray | None  # (n, n_actions) bool, or None for every action

    def __len__(self) -> int:
        return len(self.context)


class Log(NamedTuple):
    """Validated feedback: the chosen action's features instead of every action's."""

    context: np.ndarray  # (n, d)
    chosen: np.ndarray | None  # (n, k) features of the chosen actions, or None
    action: np.ndarray  # (n,)
    reward: np.ndarray  # (n,)


class BanditPolicy(Policy):
    """The policies' common base: validation and shapes; subclasses say whether they model action features."""

    #: Whether the policy models action features when it is given them (otherwise only their shape counts).
    uses_action_features = False

    def _models_actions(self) -> bool:
        return self.uses_action_features

    # -- hyperparameters ------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Raise ``ParameterError`` naming the first bad hyperparameter; subclasses extend it."""
        if self.n_actions is not None:
            check_integer(self, "n_actions", low=1)
        state = self.random_state
        if not (state is None or isinstance(state, np.random.Generator)
                or (isinstance(state, Integral) and not isinstance(state, bool) and int(state) >= 0)):
            raise ParameterError(f"{type(self).__name__}.random_state must be None, a whole number >= 0 or a "
                                 f"numpy Generator, not {state!r}", parameter="random_state")

    n_actions: int | None
    random_state: Any

    # -- shapes -----------------------------------------------------------------------------------
    def _learn_shapes(self, d: int, n_actions: int | None, k: int | None, source: str) -> None:
        if hasattr(self, "n_actions_"):
            self._check_shapes(d, n_actions, k, source)
            return
        if self.n_actions is not None:
            if n_actions is not None and n_actions != self.n_actions:
                raise ParameterError(f"{source} has {n_actions} actions, but n_actions={self.n_actions}",
                                     parameter=source)
            n_actions = self.n_actions
        if n_actions is None:
            raise ParameterError(f"{type(self).__name__} cannot tell how many actions there are: set n_actions, "
                                 "or pass action_features or candidates", parameter="n_actions")
        self.n_actions_ = int(n_actions)
        self.n_context_features_ = int(d)
        self.n_action_features_ = k if self._models_actions() else None
        self._init_state()

    def _check_shapes(self, d: int, n_actions: int | None, k: int | None, source: str) -> None:
        if self.n_actions is not None and self.n_actions != self.n_actions_:
            raise ParameterError(f"{type(self).__name__} learned {self.n_actions_} actions; n_actions cannot become "
                                 f"{self.n_actions} (make a new policy)", parameter="n_actions")
        if d != self.n_context_features_:
            raise ParameterError(f"context has {d} features; {type(self).__name__} was first used with "
                                 f"{self.n_context_features_}", parameter="context")
        if n_actions is not None and n_actions != self.n_actions_:
            raise ParameterError(f"{source} has {n_actions} actions; {type(self).__name__} has {self.n_actions_}",
                                 parameter=source)
        if self._models_actions() and k != self.n_action_features_:
            had = "no action features" if self.n_action_features_ is None else \
                f"{self.n_action_features_} action features"
            got = "none" if k is None else str(k)
            raise ParameterError(f"{type(self).__name__} was first used with {had}; these rounds have {got}",
                                 parameter="action_features")

    def _init_state(self) -> None:
        """Set the learned state for the shapes in ``n_actions_`` and friends (subclasses)."""

    def _prepare(self, context: np.ndarray, action_features: Any, mask: np.ndarray | None) -> Rounds:
        """Check hyperparameters and inputs (context and mask already checked by ``Policy``), learn shapes."""
        self._check_params()
        features = None
        n_actions = None
        if action_features is not None:
            features = np.asarray(action_features, dtype=np.float64)
            n = len(context)
            if not (features.ndim == 2 or (features.ndim == 3 and len(features) == n)):
                raise ParameterError(f"action_features must have shape (n_actions, k) or ({n}, n_actions, k), "
                                     f"not {features.shape}", parameter="action_features")
            if not np.isfinite(features).all():
                raise ParameterError("action_features has a NaN or infinite value", parameter="action_features")
            n_actions = features.shape[-2]
        k = None if features is None else features.shape[-1]
        if mask is not None:
            if n_actions is not None and mask.shape[1] != n_actions:
                known = getattr(self, "n_actions_", mask.shape[1])
                raise ParameterError(f"candidates has {mask.shape[1]} actions, action_features {n_actions}",
                                     parameter="action_features" if known == mask.shape[1] else "candidates")
            self._learn_shapes(context.shape[1], mask.shape[1], k, "candidates")
        else:
            self._learn_shapes(context.shape[1], n_actions, k, "action_features")
        if not self._models_actions():
            features = None
        return Rounds(context, features, mask)

    def _log(self, feedback: LoggedFeedback) -> Log:
        """Check hyperparameters and feedback against the shapes; learn them on first use."""
        self._check_params()
        features = feedback.action_features
        k = None if features is None else int(features.shape[-1])
        self._learn_shapes(feedback.n_features, feedback.n_actions, k, "n_actions")
        chosen = None
        if self._models_actions() and features is not None:
            chosen = features[feedback.action] if features.ndim == 2 else \
                features[np.arange(len(feedback)), feedback.action]
        return Log(feedback.context, chosen, feedback.action, feedback.reward)

    def _mask_scores(self, scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        return scores if mask is None else np.where(mask, scores, -np.inf)


class LinearPolicy(BanditPolicy):
    """A policy with one ridge (or Gaussian) model of the reward over the joint features of context and action.

    Learned state: ``precision_`` (``l2 I + X'X``), ``xty_`` (``X'y``), the lower
    Cholesky factor ``chol_`` of the precision and the weights ``coef_``, kept
    up to date by each update. ``l2`` sets the prior when the policy is first
    used. Without action features the actions get one-hot features, so the
    joint features become one model of the context per action.
    """

    uses_action_features = True
    l2: float

    def _check_params(self) -> None:
        super()._check_params()
        check_real(self, "l2", low=0.0, low_open=True)

    @property
    def _uses_context(self) -> bool:
        return True

    def _basis(self, features: np.ndarray | None) -> np.ndarray:
        return np.eye(self.n_actions_) if features is None else features

    def _init_state(self) -> None:
        self._init_gaussian()
        self.xty_ = np.zeros(len(self.coef_))

    def _init_gaussian(self) -> None:
        """The prior: weights 0, precision ``l2 I``, over as many weights as the design has columns."""
        k = self.n_actions_ if self.n_action_features_ is None else self.n_action_features_
        p = n_joint_features(self.n_context_features_, k) if self._uses_context else k
        self.precision_ = self.l2 * np.eye(p)
        self.chol_ = np.sqrt(self.l2) * np.eye(p)
        self.coef_ = np.zeros(p)

    def _design(self, context: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        """``(n, n_actions, p)`` model features of every action of every round."""
        basis = self._basis(features)
        if self._uses_context:
            return joint_features(context, basis)
        return np.broadcast_to(basis, (len(context), *basis.shape[-2:]))

    def _chosen_design(self, log: Log) -> np.ndarray:
        """``(n, p)`` model features of the chosen actions."""
        chosen = np.eye(self.n_actions_)[log.action] if log.chosen is None else log.chosen
        if self._uses_context:
            return joint_features(log.context, chosen[:, None, :])[:, 0]
        return chosen

    def _add(self, x: np.ndarray, y: np.ndarray) -> None:
        """A rank-``len(x)`` update of the ridge statistics, then refactor."""
        self.precision_ += x.T @ x
        self.xty_ += x.T @ y
        self.chol_ = cholesky(self.precision_, lower=True, check_finite=False)
        self.coef_ = cho_solve((self.chol_, True), self.xty_, check_finite=False)

    def _update(self, feedback: LoggedFeedback) -> None:
        log = self._log(feedback)
        if len(log.action):
            self._add(self._chosen_design(log), log.reward)

    def _whitened(self, design: np.ndarray) -> np.ndarray:
        """``L^-1 x`` for every row of ``design`` (``(n, n_actions, p)``), as ``(p, n, n_actions)``.

        ``x' P^-1 x`` is the squared norm of ``L^-1 x``, with ``P = L L'`` the precision.
        """
        n, n_actions, p = design.shape
        flat = solve_triangular(self.chol_, design.reshape(n * n_actions, p).T, lower=True, check_finite=False)
        return flat.reshape(p, n, n_actions)


# -- helpers ---------------------------------------------------------------------------------------------


def best_actions(scores: np.ndarray) -> np.ndarray:
    """``(n, n_actions)`` distribution putting equal mass on each round's best scores (ties within TIE_RTOL)."""
    top = scores.max(axis=1, keepdims=True)
    ties = scores >= top - TIE_RTOL * np.maximum(1.0, np.abs(top))
    return ties / ties.sum(axis=1, keepdims=True)


def floor_and_normalise(counts: np.ndarray, mask: np.ndarray | None, floor: float) -> np.ndarray:
    """Win frequencies with every candidate raised to at least ``floor``, renormalised; 0 off the candidates."""
    probs = counts / counts.sum(axis=1, keepdims=True)
    probs = np.maximum(probs, floor)
    if mask is not None:
        probs = np.where(mask, probs, 0.0)
    return probs / probs.sum(axis=1, keepdims=True)


def check_real(policy: Any, name: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False) -> float:
    value = getattr(policy, name)
    ok = isinstance(value, Real) and not isinstance(value, bool) and bool(np.isfinite(float(value)))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            bounds.append(f"<= {high:g}")
        what = " ".join(["a finite number", " and ".join(bounds)]).strip()
        raise ParameterError(f"{type(policy).__name__}.{name} must be {what}, not {value!r}", parameter=name)
    return float(value)


def check_integer(policy: Any, name: str, *, low: int) -> int:
    value = getattr(policy, name)
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        raise ParameterError(f"{type(policy).__name__}.{name} must be a whole number >= {low}, not {value!r}",
                             parameter=name)
    return int(value)


def check_choice(policy: Any, name: str, choices: tuple[str, ...]) -> str:
    value = getattr(policy, name)
    if not isinstance(value, str) or value not in choices:
        raise ParameterError(f"{type(policy).__name__}.{name} must be one of {', '.join(map(repr, choices))}, "
                             f"not {value!r}", parameter=name)
    return value


def check_unit_rewards(policy: Any, reward: np.ndarray) -> None:
    """Bernoulli-likelihood policies learn from rewards in [0, 1]."""
    bad = (reward < 0) | (reward > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ParameterError(f"{type(policy).__name__} learns from rewards in [0, 1]; round {i} has "
                             f"{float(reward[i])}", parameter="reward")
