"""Thompson sampling: linear (Gaussian posterior), logistic (Laplace approximation) and Bernoulli (Beta posteriors).

Each round, Thompson sampling draws one sample from the posterior of the
reward model and plays the action that is best under it, so an action's
probability is its chance of being best under the posterior. That has no
closed form, so :meth:`~matinee.apps.artwork.policy.Policy.probabilities` is a
Monte Carlo estimate, and ``choose`` returns it as the propensity of the action
its own posterior draw picked:

* ``n_samples`` posterior draws (1,000 by default) are scored per round and
  each action's share of wins is counted. The draws are fixed between updates
  (redrawn after each) and shared by every round, so the estimate is a
  deterministic function of the policy's state and of the round: asking twice,
  or for one round alone or inside a batch, gives the same answer, and the
  propensity ``choose`` logs equals ``probabilities(...)[i, action]``.
* A candidate that wins no draw counts as half a win: every candidate's
  probability is at least ``1 / (2 * n_samples)`` before the row is
  renormalised, so none is ever 0.
* For the Gaussian policies, an action whose mean score plus 8 posterior
  standard deviations is below another action's mean minus 8 is left out of
  the draws and counts no win: it would beat that action in a draw with
  probability below 2e-15, so the estimate is the full one except with
  negligible probability, at a fraction of the cost once the posterior is
  sharp.

The Monte Carlo error of a probability ``p`` is about ``sqrt(p (1 - p) / n_samples)``
(at most 0.016 with 1,000 draws).
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from scipy.linalg import cho_solve, cholesky
from scipy.special import expit

from matinee.apps.artwork.data import LoggedFeedback
from matinee.apps.artwork.policies._common import (
    BanditPolicy,
    LinearPolicy,
    Rounds,
    check_candidates,
    check_context,
    check_integer,
    check_real,
    check_unit_rewards,
    floor_and_normalise,
)
from matinee.apps.artwork.policy import Choice

#: Actions more than this many posterior standard deviations below another are left out of the draws.
PRUNE_SIGMAS = 8.0
#: Newton steps stop once no weight moves by more than this.
NEWTON_TOL = 1e-10
_CHUNK = 2**19  # scores held at once by the Monte Carlo count (4 MB)


class _GaussianTS(LinearPolicy):
    """Thompson sampling from a Gaussian posterior ``N(coef_, scale^2 precision_^-1)`` over the joint-feature weights."""

    exact_propensities = False
    n_samples: int

    def _scale(self) -> float:
        return 1.0

    def _check_params(self) -> None:
        super()._check_params()
        check_integer(self, "n_samples", low=1)

    def _init_state(self) -> None:
        super()._init_state()
        self._redraw()

    def _redraw(self) -> None:
        """New shared draws for the Monte Carlo estimate (standard normals in each round's score space)."""
        rank = min(len(self.coef_), self.n_actions_)
        self.mc_noise_ = self._rng().standard_normal((self.n_samples, rank))

    def _posterior(self, rounds: Rounds) -> tuple[np.ndarray, np.ndarray]:
        """Each round's score distribution: means ``(n, n_actions)`` and ``W = L^-1 X'`` ``(p, n, n_actions)``.

        The scores ``X theta`` of a round with design ``X`` (one row per action)
        are Gaussian with mean ``X coef_`` and covariance ``scale^2 W'W``, where
        ``P = L L'`` is the precision: a posterior draw of the weights,
        ``coef_ + scale L'^-1 xi`` with ``xi`` standard normal, scores
        ``mean + scale W' xi``.
        """
        design = self._design(rounds.context, rounds.features)
        return design @ self.coef_, self._whitened(design)

    def _propensities(self, means: np.ndarray, whitened: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """The Monte Carlo estimate, over the actions each round still contests."""
        scale = self._scale()
        sd = scale * np.sqrt(np.square(whitened).sum(axis=0))
        candidate = np.ones(means.shape, bool) if mask is None else mask
        low = np.where(candidate, means - PRUNE_SIGMAS * sd, -np.inf)
        alive = candidate & (means + PRUNE_SIGMAS * sd >= low.max(axis=1, keepdims=True))
        counts = alive.astype(np.float64)  # a round with one action alive: that action wins every draw
        n_alive = alive.sum(axis=1)
        for k in np.unique(n_alive[n_alive > 1]):
            rows = np.flatnonzero(n_alive == k)
            cols = np.argsort(~alive[rows], axis=1, kind="stable")[:, :k]  # the alive actions, in order
            step = max(1, _CHUNK // (self.n_samples * int(k)))
            for start in range(0, len(rows), step):
                r, c = rows[start:start + step], cols[start:start + step]
                # scores of the alive actions = mean + scale * eta R, eta standard normal in rank(W) dimensions
                loadings = whitened[:, r[:, None], c].transpose(1, 0, 2)  # (m, p, k)
                factor = cast(np.ndarray, np.linalg.qr(loadings, mode="r"))
                wins = _count_wins(np.take_along_axis(means[r], c, axis=1), scale * factor,
                                   self.mc_noise_[:, :factor.shape[1]])
                counts[r[:, None], c] = wins
        return floor_and_normalise(counts, mask, 0.5 / self.n_samples)

    def _probabilities(self, context: np.ndarray, action_features: np.ndarray | None,
                       candidates: np.ndarray | None) -> np.ndarray:
        rounds = self._prepare(context, action_features, candidates)
        return self._propensities(*self._posterior(rounds), rounds.mask)

    def choose(self, context: Any, action_features: Any = None, candidates: Any = None) -> Choice:
        """One posterior draw per round, its best candidate, and that action's Monte Carlo propensity.

        Parameters
        ----------
        context, action_features, candidates
            As for :meth:`probabilities`.

        Returns
        -------
        Choice
            The actions and their propensities, ``probabilities(...)[i, action]``.

        Raises
        ------
        ParameterError
            Bad inputs or hyperparameters.
        """
        context = check_context(context)
        mask = None if candidates is None else check_candidates(candidates, len(context))
        rounds = self._prepare(context, action_features, mask)
        means, whitened = self._posterior(rounds)
        probs = self._propensities(means, whitened, mask)
        xi = self._rng().standard_normal((len(means), len(whitened)))
        scores = means + self._scale() * np.einsum("np,pna->na", xi, whitened)
        actions = self._mask_scores(scores, mask).argmax(axis=1)
        return Choice(actions, probs[np.arange(len(actions)), actions])


class LinearTS(_GaussianTS):
    """Linear Thompson sampling (Agrawal and Goyal, 2013) over the joint features of context and action.

    The reward is modelled as linear in ``[1, z, x (x) z]`` (one-hot actions when
    there are no action features; see :mod:`matinee.apps.artwork.features`)
    with the ridge posterior ``N(theta, v^2 A^-1)``, ``A = l2 I + X'X`` and
    ``theta = A^-1 X'y``, kept as ``precision_``, ``xty_``, its Cholesky factor
    ``chol_`` and ``coef_``. Each update adds the batch's rows (a rank-``k``
    update) and refactors once. Propensities are the Monte Carlo estimate of
    :mod:`matinee.apps.artwork.policies.thompson`.

    Parameters
    ----------
    v
        Posterior scale (> 0): larger explores more.
    l2
        Ridge penalty (> 0), the prior precision of the weights.
    n_samples
        Posterior draws behind each Monte Carlo propensity.
    n_actions
        Number of actions; ``None`` takes it from the inputs.
    random_state
        Seed (or ``numpy.random.Generator``) of the draws.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.policies import LinearTS
    >>> policy = LinearTS(v=0.5, n_actions=2, random_state=0)
    >>> log = LoggedFeedback(context=np.ones((20, 1)), action=[0, 1] * 10,  # play rates 0.6 and 0.2
    ...                      reward=[1, 1, 1, 0, 1, 0, 0, 0, 0, 0] * 2, propensity=[0.5] * 20, n_actions=2)
    >>> policy.update(log).probabilities(np.ones((1, 1)))  # 968 of the 1,000 draws favour action 0
    array([[0.968, 0.032]])
    >>> choice = policy.choose(np.ones((4, 1)))
    >>> choice.actions, choice.propensities
    (array([0, 0, 0, 0]), array([0.968, 0.968, 0.968, 0.968]))
    """

    def __init__(self, v: float = 0.1, l2: float = 1.0, n_samples: int = 1000, n_actions: int | None = None,
                 random_state: Any = None) -> None:
        self.v = v
        self.l2 = l2
        self.n_samples = n_samples
        self.n_actions = n_actions
        self.random_state = random_state

    def _scale(self) -> float:
        return float(self.v)

    def _check_params(self) -> None:
        super()._check_params()
        check_real(self, "v", low=0.0, low_open=True)

    def _update(self, feedback: LoggedFeedback) -> None:
        super()._update(feedback)
        self._redraw()


class LogisticTS(_GaussianTS):
    """Logistic Thompson sampling with a Laplace approximation (Chapelle and Li, 2011), for 0/1 rewards.

    The play probability is modelled as ``sigmoid(w . [1, z, x (x) z])``. The
    posterior is approximated by a Gaussian ``N(coef_, precision_^-1)``, starting
    from the prior ``N(0, l2^-1 I)``. Each update treats the current Gaussian as
    the prior of the batch: the new mean is the posterior mode, found by
    Newton (IRLS) steps from the current mean (at most ``max_iter``, stopping
    when no weight moves by more than 1e-10), and the new precision is the old
    one plus ``sum p (1 - p) x x'`` at that mode. Its Cholesky factor ``chol_``
    is kept for the decisions. Propensities are the Monte Carlo estimate of
    :mod:`matinee.apps.artwork.policies.thompson`.

    Parameters
    ----------
    l2
        Prior precision of the weights (> 0).
    n_samples
        Posterior draws behind each Monte Carlo propensity.
    max_iter
        Most Newton steps per update (>= 1).
    n_actions
        Number of actions; ``None`` takes it from the inputs.
    random_state
        Seed (or ``numpy.random.Generator``) of the draws.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.policies import LogisticTS
    >>> policy = LogisticTS(n_actions=2, random_state=0)
    >>> log = LoggedFeedback(context=np.ones((20, 1)), action=[0, 1] * 10,  # play rates 0.6 and 0.2
    ...                      reward=[1, 1, 1, 0, 1, 0, 0, 0, 0, 0] * 2, propensity=[0.5] * 20, n_actions=2)
    >>> policy.update(log).probabilities(np.ones((1, 1)))
    array([[0.955, 0.045]])
    >>> policy.coef_.round(3)  # intercept, action features, context x action features
    array([-0.205,  0.253, -0.458,  0.253, -0.458])
    """

    def __init__(self, l2: float = 1.0, n_samples: int = 1000, max_iter: int = 10,
                 n_actions: int | None = None, random_state: Any = None) -> None:
        self.l2 = l2
        self.n_samples = n_samples
        self.max_iter = max_iter
        self.n_actions = n_actions
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        check_integer(self, "max_iter", low=1)

    def _init_state(self) -> None:
        self._init_gaussian()
        self._redraw()

    def _update(self, feedback: LoggedFeedback) -> None:
        log = self._log(feedback)
        check_unit_rewards(self, log.reward)
        if len(log.action) == 0:
            return
        x, y = self._chosen_design(log), log.reward
        prior_mean, prior_precision = self.coef_, self.precision_
        w = prior_mean.copy()
        for _ in range(self.max_iter):
            p = expit(x @ w)
            gradient = prior_precision @ (w - prior_mean) + x.T @ (p - y)
            hessian = prior_precision + (x.T * (p * (1.0 - p))) @ x
            step = cho_solve((cholesky(hessian, lower=True, check_finite=False), True), gradient,
                             check_finite=False)
            w = w - step
            if np.max(np.abs(step)) <= NEWTON_TOL:
                break
        p = expit(x @ w)
        self.precision_ = prior_precision + (x.T * (p * (1.0 - p))) @ x
        self.chol_ = cholesky(self.precision_, lower=True, check_finite=False)
        self.coef_ = w
        self._redraw()


class BernoulliTS(BanditPolicy):
    """Context-free Bernoulli Thompson sampling: one ``Beta(alpha_a, beta_a)`` posterior per action.

    Each update adds an action's rewards to ``alpha_`` and its ``1 - reward``
    to ``beta_`` (rewards in [0, 1]). It ignores the context and the action
    features (only their shapes are checked). Propensities are the Monte
    Carlo estimate of :mod:`matinee.apps.artwork.policies.thompson`:
    ``n_samples`` draws from the posteriors, fixed between updates, and each
    candidate's share of wins among the round's candidates.

    Parameters
    ----------
    alpha, beta
        Parameters of every action's Beta prior (> 0).
    n_samples
        Posterior draws behind each Monte Carlo propensity.
    n_actions
        Number of actions; ``None`` takes it from the inputs.
    random_state
        Seed (or ``numpy.random.Generator``) of the draws.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.policies import BernoulliTS
    >>> policy = BernoulliTS(n_actions=3, random_state=0)
    >>> log = LoggedFeedback(context=np.zeros((30, 1)), action=[0, 1, 2] * 10,
    ...                      reward=[1, 1, 0] * 4 + [1, 0, 0] * 2 + [0, 0, 0] * 4, propensity=[1 / 3] * 30,
    ...                      n_actions=3)
    >>> policy.update(log).alpha_, policy.beta_
    (array([7., 5., 1.]), array([ 5.,  7., 11.]))
    >>> policy.probabilities(np.zeros((1, 1)))  # shares of 1,000 posterior draws won
    array([[0.811, 0.188, 0.001]])
    """

    exact_propensities = False

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, n_samples: int = 1000, n_actions: int | None = None,
                 random_state: Any = None) -> None:
        self.alpha = alpha
        self.beta = beta
        self.n_samples = n_samples
        self.n_actions = n_actions
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        check_real(self, "alpha", low=0.0, low_open=True)
        check_real(self, "beta", low=0.0, low_open=True)
        check_integer(self, "n_samples", low=1)

    def _init_state(self) -> None:
        self.alpha_ = np.full(self.n_actions_, float(self.alpha))
        self.beta_ = np.full(self.n_actions_, float(self.beta))
        self._redraw()

    def _redraw(self) -> None:
        self.mc_draws_ = self._rng().beta(self.alpha_, self.beta_, size=(self.n_samples, self.n_actions_))

    def _probabilities(self, context: np.ndarray, action_features: np.ndarray | None,
                       candidates: np.ndarray | None) -> np.ndarray:
        rounds = self._prepare(context, action_features, candidates)
        n, n_actions = len(rounds), self.n_actions_
        if rounds.mask is None:
            masks, which = np.ones((1, n_actions), bool), np.zeros(n, np.intp)
        else:
            masks, which = np.unique(rounds.mask, axis=0, return_inverse=True)
        counts = np.empty((len(masks), n_actions))
        for i, allowed in enumerate(masks):
            best = np.where(allowed, self.mc_draws_, -np.inf).argmax(axis=1)
            counts[i] = np.bincount(best, minlength=n_actions)
        return floor_and_normalise(counts[which.ravel()], rounds.mask, 0.5 / self.n_samples)

    def choose(self, context: Any, action_features: Any = None, candidates: Any = None) -> Choice:
        """One posterior draw per round, its best candidate, and that action's Monte Carlo propensity.

        Parameters
        ----------
        context, action_features, candidates
            As for :meth:`probabilities`.

        Returns
        -------
        Choice
            The actions and their propensities, ``probabilities(...)[i, action]``.

        Raises
        ------
        ParameterError
            Bad inputs or hyperparameters.
        """
        context = check_context(context)
        mask = None if candidates is None else check_candidates(candidates, len(context))
        probs = self._probabilities(context, action_features, mask)
        draws = self._rng().beta(self.alpha_, self.beta_, size=(len(context), self.n_actions_))
        actions = self._mask_scores(draws, mask).argmax(axis=1)
        return Choice(actions, probs[np.arange(len(actions)), actions])

    def _update(self, feedback: LoggedFeedback) -> None:
        log = self._log(feedback)
        check_unit_rewards(self, log.reward)
        self.alpha_ += np.bincount(log.action, weights=log.reward, minlength=self.n_actions_)
        self.beta_ += np.bincount(log.action, weights=1.0 - log.reward, minlength=self.n_actions_)
        self._redraw()


def _count_wins(means: np.ndarray, factor: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """How often each action is best over the draws ``means + noise @ factor``; ``(m, k)`` from ``(m, k)`` means.

    ``factor`` is ``(m, r, k)`` and ``noise`` ``(n_draws, r)``, shared by the
    ``m`` rounds. Exact ties go to the first action, as ``argmax`` does.
    """
    m, k = means.shape
    n_draws = len(noise)
    # scores[a, i, s] of action a, round i, draw s in one matrix product, the means riding on a column of ones
    loadings = np.concatenate([factor, means[:, None, :]], axis=1).transpose(2, 0, 1).reshape(k * m, -1)
    draws = np.concatenate([noise, np.ones((n_draws, 1))], axis=1)
    scores = (loadings @ draws.T).reshape(k, m, n_draws)
    wins = (scores == scores.max(axis=0)).sum(axis=2).T
    for i in np.flatnonzero(wins.sum(axis=1) > n_draws):  # rare: identical actions
        wins[i] = np.bincount(scores[:, i].argmax(axis=0), minlength=k)
    return wins
