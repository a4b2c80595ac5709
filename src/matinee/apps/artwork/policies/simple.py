"""Policies with closed-form propensities: uniform random, epsilon-greedy and softmax."""

from __future__ import annotations

from typing import Any

import numpy as np

from matinee.apps.artwork.data import LoggedFeedback
from matinee.apps.artwork.policies._common import (
    BanditPolicy,
    LinearPolicy,
    best_actions,
    check_real,
)

#: Softmax log-weights are clipped at this distance below a round's largest, so no candidate's
#: probability underflows to 0 (it stays above ~1e-304).
SOFTMAX_LOG_FLOOR = -700.0


class UniformRandom(BanditPolicy):
    """Every candidate action with equal probability: the logging policy of randomised experiments.

    Parameters
    ----------
    n_actions
        Number of actions; ``None`` takes it from the action features, the
        candidates mask or the first feedback.
    random_state
        Seed (or ``numpy.random.Generator``) of the draws in :meth:`choose`.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork.policies import UniformRandom
    >>> policy = UniformRandom(n_actions=4, random_state=0)
    >>> policy.probabilities(np.zeros((2, 3)), candidates=[[1, 1, 1, 1], [1, 0, 1, 0]])
    array([[0.25, 0.25, 0.25, 0.25],
           [0.5 , 0.  , 0.5 , 0.  ]])
    >>> choice = policy.choose(np.zeros((2, 3)), candidates=[[1, 1, 1, 1], [1, 0, 1, 0]])
    >>> choice.propensities
    array([0.25, 0.5 ])
    """

    def __init__(self, n_actions: int | None = None, random_state: Any = None) -> None:
        self.n_actions = n_actions
        self.random_state = random_state

    def _probabilities(self, context: np.ndarray, action_features: np.ndarray | None,
                       candidates: np.ndarray | None) -> np.ndarray:
        rounds = self._prepare(context, action_features, candidates)
        if rounds.mask is None:
            return np.full((len(rounds), self.n_actions_), 1.0 / self.n_actions_)
        return rounds.mask / rounds.mask.sum(axis=1, keepdims=True)

    def _update(self, feedback: LoggedFeedback) -> None:
        self._log(feedback)  # checks the feedback; there is nothing to learn


class _Greedy(LinearPolicy):
    """Scores actions by a ridge estimate of their reward: per action, or linear in the joint features."""

    uses_action_features = True

    @property
    def _uses_context(self) -> bool:
        # Without action features: one mean per action (ridge on one-hot features, so sum / (count + l2)).
        return self.n_action_features_ is not None

    def _scores(self, context: np.ndarray, action_features: np.ndarray | None,
                candidates: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        rounds = self._prepare(context, action_features, candidates)
        scores = self._design(rounds.context, rounds.features) @ self.coef_
        return self._mask_scores(scores, rounds.mask), rounds.mask


class EpsilonGreedy(_Greedy):
    """With probability ``1 - epsilon`` the action estimated best, otherwise a uniformly random candidate.

    The estimate is a ridge regression of the reward: per action (the mean
    reward shrunk towards 0, ``sum / (count + l2)``) when the rounds have no
    action features, and linear in the joint features ``[1, z, x (x) z]`` of
    context and action (see :mod:`matinee.apps.artwork.features`) when they
    have. Propensities are exact: a round with ``K`` candidates and ``T`` tied
    best estimates gives each of them ``(1 - epsilon) / T + epsilon / K``,
    every other candidate ``epsilon / K``.

    Parameters
    ----------
    epsilon
        Exploration rate in [0, 1].
    l2
        Ridge penalty (> 0), the prior precision of the weights.
    n_actions
        Number of actions; ``None`` takes it from the inputs.
    random_state
        Seed (or ``numpy.random.Generator``) of the draws in :meth:`choose`.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.policies import EpsilonGreedy
    >>> policy = EpsilonGreedy(epsilon=0.2, n_actions=3, random_state=0)
    >>> policy.probabilities(np.zeros((1, 2))).round(3)  # nothing learned: the three actions tie
    array([[0.333, 0.333, 0.333]])
    >>> log = LoggedFeedback(context=np.zeros((4, 2)), action=[0, 1, 2, 2], reward=[0, 0, 1, 1],
    ...                      propensity=[1 / 3] * 4, n_actions=3)
    >>> policy.update(log).probabilities(np.zeros((1, 2))).round(3)
    array([[0.067, 0.067, 0.867]])
    """

    def __init__(self, epsilon: float = 0.1, l2: float = 1.0, n_actions: int | None = None,
                 random_state: Any = None) -> None:
        self.epsilon = epsilon
        self.l2 = l2
        self.n_actions = n_actions
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        check_real(self, "epsilon", low=0.0, high=1.0)

    def _probabilities(self, context: np.ndarray, action_features: np.ndarray | None,
                       candidates: np.ndarray | None) -> np.ndarray:
        scores, mask = self._scores(context, action_features, candidates)
        explore = np.ones_like(scores) if mask is None else mask.astype(np.float64)
        explore /= explore.sum(axis=1, keepdims=True)
        return (1.0 - self.epsilon) * best_actions(scores) + self.epsilon * explore


class Softmax(_Greedy):
    """Actions in proportion to ``exp(estimate / temperature)``: Boltzmann exploration.

    The estimate is the ridge regression of :class:`EpsilonGreedy`. A
    candidate's probability is ``exp(s_a / T) / sum_b exp(s_b / T)`` over the
    round's candidates, exactly, except that the exponent is kept within 700
    of the round's largest, so that no candidate's probability is ever 0
    (it is at least about 1e-304).

    Parameters
    ----------
    temperature
        ``T`` > 0: small is nearly greedy, large nearly uniform.
    l2
        Ridge penalty (> 0).
    n_actions
        Number of actions; ``None`` takes it from the inputs.
    random_state
        Seed (or ``numpy.random.Generator``) of the draws in :meth:`choose`.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.policies import Softmax
    >>> policy = Softmax(temperature=0.5, l2=1.0, n_actions=2, random_state=0)
    >>> log = LoggedFeedback(context=np.zeros((3, 1)), action=[0, 0, 1], reward=[1, 1, 0],
    ...                      propensity=[0.5] * 3, n_actions=2)
    >>> probs = policy.update(log).probabilities(np.zeros((1, 1)))
    >>> bool(np.allclose(probs, np.exp([2 / 3 / 0.5, 0]) / np.exp([2 / 3 / 0.5, 0]).sum()))
    True
    """

    def __init__(self, temperature: float = 0.1, l2: float = 1.0, n_actions: int | None = None,
                 random_state: Any = None) -> None:
        self.temperature = temperature
        self.l2 = l2
        self.n_actions = n_actions
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        check_real(self, "temperature", low=0.0, low_open=True)

    def _probabilities(self, context: np.ndarray, action_features: np.ndarray | None,
                       candidates: np.ndarray | None) -> np.ndarray:
        scores, mask = self._scores(context, action_features, candidates)
        logits = (scores - scores.max(axis=1, keepdims=True)) / self.temperature
        weights = np.exp(np.maximum(logits, SOFTMAX_LOG_FLOOR))
        if mask is not None:
            weights = np.where(mask, weights, 0.0)
        return weights / weights.sum(axis=1, keepdims=True)
