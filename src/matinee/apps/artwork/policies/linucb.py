"""LinUCB: play the action with the highest upper confidence bound of a ridge regression of the reward."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular

from matinee.apps.artwork.data import LoggedFeedback
from matinee.apps.artwork.policies._common import (
    LinearPolicy,
    best_actions,
    check_candidates,
    check_choice,
    check_context,
    check_real,
)
from matinee.errors import ParameterError

MODES = ("shared", "disjoint")


class LinUCB(LinearPolicy):
    """LinUCB (Li et al., 2010): the action maximising ``x'theta + alpha * sqrt(x' A^-1 x)``.

    ``A = l2 I + X'X`` and ``theta = A^-1 X'y`` are a ridge regression of the
    reward, kept as ``precision_`` (``A``), ``xty_`` (``X'y``), the Cholesky
    factor ``chol_`` of ``A`` and ``coef_`` (``theta``). Each update adds the
    batch's rows to ``A`` and ``X'y`` (a rank-``k`` update) and refactors; the
    factor is reused by every decision until the next update.

    ``mode="shared"`` fits one model over the joint features ``[1, z, x (x) z]``
    of context ``x`` and action features ``z`` (one-hot actions when there are
    no action features; see :mod:`matinee.apps.artwork.features`), so what is
    learned about one action informs the others. ``mode="disjoint"`` fits one
    model of the context (with an intercept) per action and ignores action
    features; then ``precision_`` is ``(n_actions, d + 1, d + 1)``.

    The policy is deterministic: it plays the best bound among the candidates.
    Bounds within ``1e-12`` (relative) of the best are ties, broken uniformly
    at random; each tied action then has propensity ``1 / #ties`` and every
    other action 0, and :meth:`probabilities` says exactly that.

    Parameters
    ----------
    alpha
        Width of the confidence bound (>= 0; 0 is greedy).
    mode
        ``"shared"`` or ``"disjoint"`` (see above).
    l2
        Ridge penalty (> 0).
    n_actions
        Number of actions; ``None`` takes it from the inputs.
    random_state
        Seed (or ``numpy.random.Generator``) of the tie-breaking draws.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.policies import LinUCB
    >>> policy = LinUCB(alpha=0.5, mode="disjoint", n_actions=3, random_state=0)
    >>> policy.probabilities(np.ones((1, 2)))  # nothing learned: a three-way tie
    array([[0.33333333, 0.33333333, 0.33333333]])
    >>> log = LoggedFeedback(context=np.ones((6, 2)), action=[0, 0, 1, 1, 2, 2],
    ...                      reward=[0, 0, 1, 1, 0, 1], propensity=[1 / 3] * 6, n_actions=3)
    >>> policy.update(log).probabilities(np.ones((1, 2)))
    array([[0., 1., 0.]])
    >>> policy.choose(np.ones((2, 2))).actions
    array([1, 1])
    """

    deterministic = True

    def __init__(self, alpha: float = 1.0, mode: str = "shared", l2: float = 1.0, n_actions: int | None = None,
                 random_state: Any = None) -> None:
        self.alpha = alpha
        self.mode = mode
        self.l2 = l2
        self.n_actions = n_actions
        self.random_state = random_state

    def _models_actions(self) -> bool:
        return getattr(self, "mode_", self.mode) == "shared"

    def _check_params(self) -> None:
        super()._check_params()
        check_real(self, "alpha", low=0.0)
        check_choice(self, "mode", MODES)
        if hasattr(self, "mode_") and self.mode != self.mode_:
            raise ParameterError(f"LinUCB learned in mode {self.mode_!r}; it cannot switch to {self.mode!r} "
                                 "(make a new policy)", parameter="mode")

    def _init_state(self) -> None:
        self.mode_ = self.mode
        if self.mode_ == "shared":
            super()._init_state()
            return
        q = self.n_context_features_ + 1
        eye = np.broadcast_to(np.eye(q), (self.n_actions_, q, q))
        self.precision_ = self.l2 * eye
        self.xty_ = np.zeros((self.n_actions_, q))
        self.chol_ = np.sqrt(self.l2) * eye
        self.coef_ = np.zeros((self.n_actions_, q))

    # -- the bound -------------------------------------------------------------------------------------
    def upper_bounds(self, context: Any, action_features: Any = None, candidates: Any = None) -> np.ndarray:
        """The upper confidence bound of every action, ``(n, n_actions)``; ``-inf`` off the candidates.

        Parameters
        ----------
        context, action_features, candidates
            As for :meth:`probabilities`.

        Returns
        -------
        numpy.ndarray
            ``x'theta + alpha * sqrt(x' A^-1 x)`` per round and action.

        Raises
        ------
        ParameterError
            Bad inputs or hyperparameters.
        """
        context = check_context(context)
        mask = None if candidates is None else check_candidates(candidates, len(context))
        rounds = self._prepare(context, action_features, mask)
        return self._mask_scores(self._bounds(rounds.context, rounds.features), rounds.mask)

    def _bounds(self, context: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        if self.mode_ == "shared":
            design = self._design(context, features)
            width = np.sqrt(np.square(self._whitened(design)).sum(axis=0))
            return design @ self.coef_ + self.alpha * width
        xs = _with_intercept(context)
        bounds = xs @ self.coef_.T
        for a in range(self.n_actions_):
            whitened = solve_triangular(self.chol_[a], xs.T, lower=True, check_finite=False)
            bounds[:, a] += self.alpha * np.sqrt(np.square(whitened).sum(axis=0))
        return bounds

    def _probabilities(self, context: np.ndarray, action_features: np.ndarray | None,
                       candidates: np.ndarray | None) -> np.ndarray:
        rounds = self._prepare(context, action_features, candidates)
        bounds = self._bounds(rounds.context, rounds.features)
        return best_actions(self._mask_scores(bounds, rounds.mask))

    def _update(self, feedback: LoggedFeedback) -> None:
        log = self._log(feedback)
        if self.mode_ == "shared":
            if len(log.action):
                self._add(self._chosen_design(log), log.reward)
            return
        xs = _with_intercept(log.context)
        for a in np.unique(log.action):
            rows = log.action == a
            self.precision_[a] += xs[rows].T @ xs[rows]
            self.xty_[a] += xs[rows].T @ log.reward[rows]
            self.chol_[a] = cholesky(self.precision_[a], lower=True, check_finite=False)
            self.coef_[a] = cho_solve((self.chol_[a], True), self.xty_[a], check_finite=False)


def _with_intercept(context: np.ndarray) -> np.ndarray:
    return np.concatenate([np.ones((len(context), 1)), context], axis=1)
