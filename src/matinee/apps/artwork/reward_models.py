"""Reward models for the model-based off-policy estimators (DM, DR, SNDR, Switch-DR).

A reward model predicts ``q_hat[i, a]``, the expected reward of action ``a``
in round ``i`` (at that round's position), for every round of a
:class:`~matinee.apps.artwork.data.LoggedFeedback` and every action:
``fit_predict(feedback, sample_weight=None) -> q_hat`` of shape
``(n, n_actions)``. Any object with that method can serve an estimator.

Both models here are **cross-fitted**: the rounds are split into
``n_folds`` folds, and the predictions for a round come from a model fitted on
the other folds only, so a round's own reward never leaks into its
prediction (the overfitting bias that in-sample predictions give DR).
``sample_weight`` holds whole-number counts when a bootstrap resample is
refitted; folds belong to the original rounds, so copies of a round always
share its fold.

Features are linear in blocks:

``features="per_action"`` (default)
    a separate linear model on ``[1, context]`` for each action: the one-hot
    action and the context x action interactions.
``features="shared"``
    one model on ``[1, context] ⊗ [1, action_features]``: context, action
    features and their interactions, shared by every action (needs
    ``action_features``; per-round features work too).

With ``by_position=True`` (default) and a log that has positions, each
position gets its own model, as Open Bandit Pipeline's ``RegressionModel``
does. Both models predict around the training folds' mean reward, so an
action never seen in training predicts that mean.

:class:`RidgeRewardModel` solves in closed form from sufficient statistics,
which lets the bootstrap refit it for a whole batch of resamples at once
(:meth:`RidgeRewardModel.bootstrap_sums`); :class:`LogisticRewardModel` fits
by Newton's method and is refitted resample by resample.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from matinee.apps.artwork.data import LoggedFeedback
from matinee.errors import ParameterError

__all__ = ["LogisticRewardModel", "RewardModel", "RidgeRewardModel"]

_FEATURES = ("per_action", "shared")
_FLOAT_BUDGET = 1 << 21  # floats per intermediate array in a bootstrap chunk (16 MB, reused rather than paged in)


@runtime_checkable
class RewardModel(Protocol):
    """What an estimator needs from a reward model."""

    def fit_predict(self, feedback: LoggedFeedback, sample_weight: np.ndarray | None = None) -> np.ndarray:
        """Cross-fitted predictions ``(n, n_actions)`` for every round and action."""
        ...  # pragma: no cover


class _Design:
    """Block-linear features of the logged rounds: block ``g = position * J + j``."""

    def __init__(self, feedback: LoggedFeedback, features: str, by_position: bool) -> None:
        n, n_actions = len(feedback), feedback.n_actions
        self.n, self.n_actions = n, n_actions
        self.u = np.hstack([np.ones((n, 1)), feedback.context])
        if by_position and feedback.position is not None:
            _, self.pos = np.unique(np.asarray(feedback.position), return_inverse=True)
            self.pos = self.pos.reshape(-1)
            self.n_pos = int(self.pos.max()) + 1 if n else 1
        else:
            self.pos, self.n_pos = np.zeros(n, dtype=np.int64), 1
        self.shared = features == "shared"
        if self.shared:
            if feedback.action_features is None:
                raise ParameterError("features='shared' needs feedback.action_features", parameter="features")
            feats = feedback.action_features
            lead = np.ones((*feats.shape[:-1], 1))
            self.fv = np.concatenate([lead, feats], axis=-1)  # (A, k+1) or (n, A, k+1)
            fa = self.fv[feedback.action] if self.fv.ndim == 2 else self.fv[np.arange(n), feedback.action]
            self.J, self.p = 1, self.u.shape[1] * self.fv.shape[-1]
            self.z = (self.u[:, :, None] * fa[:, None, :]).reshape(n, self.p)
            j = np.zeros(n, dtype=np.int64)
        else:
            self.J, self.p, self.z = n_actions, self.u.shape[1], self.u
            j = feedback.action
        self.n_blocks = self.n_pos * self.J
        self.block = self.pos * self.J + j

    def dm_features(self, pi: np.ndarray) -> np.ndarray:
        """Per round, the features averaged over ``pi``, in that round's blocks: ``(n, J * p)``."""
        if self.shared:
            vbar = pi @ self.fv if self.fv.ndim == 2 else np.einsum("na,nak->nk", pi, self.fv)
            return (self.u[:, :, None] * vbar[:, None, :]).reshape(self.n, self.p)
        return (pi[:, :, None] * self.u[:, None, :]).reshape(self.n, self.J * self.p)

    def predict(self, theta: np.ndarray, rbar: np.ndarray, fold: np.ndarray) -> np.ndarray:
        """``q_hat (n, n_actions)`` from coefficients ``(K, G, p)`` and offsets ``(K,)``, round by round's fold."""
        q = np.empty((self.n, self.n_actions))
        step = max(1, _FLOAT_BUDGET // max(1, self.n_actions * self.p))
        for start in range(0, self.n, step):
            rows = slice(start, start + step)
            k, pos, u = fold[rows], self.pos[rows], self.u[rows]
            if self.shared:
                coef = theta[k, pos].reshape(len(k), u.shape[1], self.fv.shape[-1])
                fv = self.fv if self.fv.ndim == 2 else self.fv[rows]
                uc = np.einsum("np,npq->nq", u, coef)
                q[rows] = uc @ fv.T if fv.ndim == 2 else np.einsum("nq,naq->na", uc, fv)
            else:
                coef = theta.reshape(theta.shape[0], self.n_pos, self.J, self.p)[k, pos]
                q[rows] = np.einsum("nap,np->na", coef, u)
            q[rows] += rbar[k][:, None]
        return q


class _LinearModelBase:
    """Shared hyperparameters, validation and fold assignment."""

    def __init__(self, *, alpha: float = 1.0, n_folds: int = 5, features: str = "per_action",
                 by_position: bool = True, random_state: int | None = 0) -> None:
        self.alpha = alpha
        self.n_folds = n_folds
        self.features = features
        self.by_position = by_position
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as given to ``__init__``."""
        return {name: getattr(self, name) for name in ("alpha", "n_folds", "features", "by_position",
                                                      "random_state")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def _check(self, feedback: Any) -> None:
        if not isinstance(feedback, LoggedFeedback):
            raise ParameterError(f"feedback must be LoggedFeedback, not {type(feedback).__name__}",
                                 parameter="feedback")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ParameterError(f"alpha must be a positive number, not {self.alpha!r}", parameter="alpha")
        if isinstance(self.n_folds, bool) or not isinstance(self.n_folds, (int, np.integer)) or self.n_folds < 1:
            raise ParameterError(f"n_folds must be a whole number >= 1, not {self.n_folds!r}", parameter="n_folds")
        if self.n_folds > len(feedback):
            raise ParameterError(f"n_folds={self.n_folds} is more than the {len(feedback)} rounds",
                                 parameter="n_folds")
        if self.features not in _FEATURES:
            raise ParameterError(f"features must be one of {', '.join(_FEATURES)}, not {self.features!r}",
                                 parameter="features")

    def _folds(self, n: int) -> np.ndarray:
        fold = np.empty(n, dtype=np.int64)
        fold[np.random.default_rng(self.random_state).permutation(n)] = np.arange(n) % self.n_folds
        return fold


def one_blas_thread() -> Any:
    """Limit BLAS to one thread: the bootstrap's many small products only lose to thread synchronisation."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with matinee's dependencies
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _sample_weight(sample_weight: Any, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    weight = np.asarray(sample_weight, dtype=np.float64)
    if weight.shape != (n,) or not np.isfinite(weight).all() or (weight < 0).any():
        raise ParameterError(f"sample_weight must be {n} finite non-negative numbers", parameter="sample_weight")
    return weight


class RidgeRewardModel(_LinearModelBase):
    """Cross-fitted ridge regression of the reward on block-linear features.

    Each fold's model minimises ``sum_i c_i (r_i - rbar - z_i @ theta)^2 +
    alpha * |theta|^2`` over the other folds' rounds (``c_i`` the sample
    weights, ``rbar`` their weighted mean reward), in closed form.

    Parameters
    ----------
    alpha
        Ridge penalty, > 0.
    n_folds
        Cross-fitting folds (1 fits and predicts in-sample).
    features
        ``"per_action"`` or ``"shared"``; see the module docstring.
    by_position
        One model per position when the log has positions.
    random_state
        Seeds the assignment of rounds to folds.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.reward_models import RidgeRewardModel
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(400, 2))
    >>> a = rng.integers(0, 2, 400)
    >>> r = np.where(a == 1, 1.0 + x[:, 0], 0.5) + rng.normal(0, 0.1, 400)
    >>> log = LoggedFeedback(context=x, action=a, reward=r, propensity=np.full(400, 0.5), n_actions=2)
    >>> q_hat = RidgeRewardModel(alpha=0.1, n_folds=2).fit_predict(log)
    >>> q_hat.shape
    (400, 2)
    >>> bool(np.abs(q_hat[:, 1] - (1.0 + x[:, 0])).mean() < 0.05)
    True
    """

    def fit_predict(self, feedback: LoggedFeedback, sample_weight: np.ndarray | None = None) -> np.ndarray:
        """Cross-fitted predictions ``q_hat (n, n_actions)`` for every round and action.

        Parameters
        ----------
        feedback
            The log to fit on and predict for.
        sample_weight
            Non-negative weight per round (bootstrap counts); default all 1.

        Returns
        -------
        numpy.ndarray
            ``(n, n_actions)`` predicted rewards; round ``i``'s row comes from the model of the
            folds other than its own, at its own position.

        Raises
        ------
        ParameterError
            For a bad hyperparameter (named) or sample weights of the wrong length or sign.
        """
        self._check(feedback)
        weight = _sample_weight(sample_weight, len(feedback))
        design = _Design(feedback, self.features, self.by_position)
        stats = _RidgeStats(design, self._folds(len(feedback)), self.n_folds, feedback.reward)
        theta, rbar, _ = stats.solve(weight[None, :], self.alpha)
        self.coef_, self.intercept_, self.folds_ = theta[0], rbar[0], stats.fold
        return design.predict(theta[0], rbar[0], stats.fold)

    def bootstrap_sums(
        self, feedback: LoggedFeedback, pi: np.ndarray, weight: np.ndarray,
        counts: np.ndarray | Iterable[np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Refit for a batch of resamples at once and return the sums DM and DR are made of.

        For each resample ``b`` (row ``b`` of ``counts``, how often each round
        was drawn), the model is refitted by cross-fitting on the resampled
        rounds and, with ``q_b`` its predictions,

        - ``dm[b] = sum_i counts[b, i] * sum_a pi[i, a] * q_b[i, a]``
        - ``correction[b] = sum_i counts[b, i] * weight[i] * (r_i - q_b[i, a_i])``

        without materialising the resamples or ``q_b``: the fit needs only
        per-(fold, block) sufficient statistics, which are count-weighted sums.
        With all counts 1 this is exactly what :meth:`fit_predict` gives.

        Parameters
        ----------
        feedback
            The log.
        pi
            ``(n, n_actions)`` evaluation policy at each round's position.
        weight
            ``(n,)`` importance weights as the estimator uses them (clipped, switched).
        counts
            ``(B, n)`` resample counts, or an iterable of such chunks.

        Returns
        -------
        tuple of numpy.ndarray
            ``dm`` and ``correction``, each ``(B,)``.

        Examples
        --------
        >>> import numpy as np
        >>> from matinee.apps.artwork import LoggedFeedback
        >>> from matinee.apps.artwork.reward_models import RidgeRewardModel
        >>> rng = np.random.default_rng(0)
        >>> log = LoggedFeedback(context=rng.normal(size=(50, 2)), action=rng.integers(0, 2, 50),
        ...                      reward=rng.random(50), propensity=np.full(50, 0.5), n_actions=2)
        >>> pi = np.tile([0.3, 0.7], (50, 1))
        >>> model = RidgeRewardModel(n_folds=2)
        >>> dm, _ = model.bootstrap_sums(log, pi, np.ones(50), np.ones((1, 50)))
        >>> bool(np.isclose(dm[0], (pi * model.fit_predict(log)).sum()))
        True
        """
        self._check(feedback)
        design = _Design(feedback, self.features, self.by_position)
        stats = _RidgeStats(design, self._folds(len(feedback)), self.n_folds, feedback.reward,
                            np.asarray(weight, dtype=np.float64), design.dm_features(pi))
        per = max(1, _FLOAT_BUDGET // max(stats.n_folds * design.n_blocks * stats.F.shape[1], design.n,
                                          stats.dmf.shape[1] * stats.n_folds * design.n_pos))
        chunks = [counts] if isinstance(counts, np.ndarray) else counts
        dm: list[np.ndarray] = []
        corr: list[np.ndarray] = []
        with one_blas_thread():
            for batch in _rebatch(chunks, per):
                d, c = stats.sums(batch, self.alpha)
                dm.append(d)
                corr.append(c)
        return np.concatenate(dm), np.concatenate(corr)


class _RidgeStats:
    """Per-(fold, block) sufficient statistics of the ridge fit, for a batch of count vectors."""

    def __init__(self, design: _Design, fold: np.ndarray, n_folds: int, reward: np.ndarray,
                 weight: np.ndarray | None = None, dmf: np.ndarray | None = None) -> None:
        self.design, self.fold, self.n_folds = design, fold, n_folds
        p, z, r = design.p, design.z, reward
        self.iu = np.triu_indices(p)
        w = np.zeros(len(r)) if weight is None else weight
        # Columns: upper triangle of z z^T | z | r z | w z | 1, r, w, w r
        self.F = np.hstack([z[:, self.iu[0]] * z[:, self.iu[1]], z, r[:, None] * z, w[:, None] * z,
                            np.stack([np.ones(len(r)), r, w, w * r], axis=1)])
        self.order = np.lexsort((design.block, fold))
        self.F = self.F[self.order]
        self.dmf = np.zeros((len(r), 0)) if dmf is None else dmf[self.order]
        key = (fold * design.n_blocks + design.block)[self.order]
        self.groups = _runs(key)
        pos_key = (fold * design.n_pos + design.pos)[self.order]
        self.pos_groups = _runs(pos_key)

    def _group_sums(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d, b = self.design, len(counts)
        cs = counts[:, self.order]
        fac = np.zeros((b, self.n_folds * d.n_blocks, self.F.shape[1]))
        for key, lo, hi in self.groups:
            fac[:, key] = cs[:, lo:hi] @ self.F[lo:hi]
        dm = np.zeros((b, self.n_folds * d.n_pos, self.dmf.shape[1]))
        if self.dmf.shape[1]:
            for key, lo, hi in self.pos_groups:
                dm[:, key] = cs[:, lo:hi] @ self.dmf[lo:hi]
        return fac.reshape(b, self.n_folds, d.n_blocks, -1), dm

    def solve(self, counts: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, tuple[Any, ...]]:
        """Coefficients ``(b, K, G, p)`` and offsets ``(b, K)``, plus the group sums."""
        p = self.design.p
        fac, dm = self._group_sums(counts)
        # The model predicting fold k is fitted on the other folds: totals minus fold k.
        train = fac.sum(axis=1, keepdims=True) - fac if self.n_folds > 1 else fac
        nq = len(self.iu[0])
        scal_train = train[..., -4:].sum(axis=2)  # (b, K, 4): training sums of 1, r, w, w r
        n_tr, s_tr = scal_train[..., 0], scal_train[..., 1]
        rbar = np.divide(s_tr, n_tr, out=np.zeros_like(s_tr), where=n_tr > 0)
        rhs = train[..., nq + p:nq + 2 * p] - rbar[..., None, None] * train[..., nq:nq + p]
        theta = np.empty(rhs.shape)
        step = max(1, _FLOAT_BUDGET // (np.prod(train.shape[1:3]) * p * p))
        for lo in range(0, len(counts), step):  # the (b, K, G, p, p) Gram matrices, a few resamples at a time
            upper = train[lo:lo + step, ..., :nq]
            gram = np.empty((*upper.shape[:3], p, p))
            gram[..., self.iu[0], self.iu[1]] = upper
            gram[..., self.iu[1], self.iu[0]] = upper
            gram += alpha * np.eye(p)
            theta[lo:lo + step] = np.linalg.solve(gram, rhs[lo:lo + step, ..., None])[..., 0]
        return theta, rbar, (fac, dm, fac[..., -4:].sum(axis=2))

    def sums(self, counts: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        d, p = self.design, self.design.p
        theta, rbar, (fac, dm, scal) = self.solve(counts, alpha)
        wz = fac[..., -4 - p:-4]
        b = len(counts)
        theta_pos = theta.reshape(b, self.n_folds, d.n_pos, d.J * p)
        dm_sum = (rbar * scal[..., 0]).sum(axis=1) + np.einsum(
            "bkgq,bkgq->b", theta_pos, dm.reshape(b, self.n_folds, d.n_pos, -1))
        corr = (scal[..., 3] - rbar * scal[..., 2]).sum(axis=1) - np.einsum("bkgp,bkgp->b", theta, wz)
        return dm_sum, corr


def _rebatch(chunks: Iterable[np.ndarray], per: int) -> Iterator[np.ndarray]:
    """Regroup count chunks into batches of ``per`` resamples (the last may be smaller)."""
    pending: list[np.ndarray] = []
    size = 0
    for chunk in chunks:
        chunk = np.atleast_2d(np.array(chunk, dtype=np.float64))  # a copy: the caller may reuse its buffer
        pending.append(chunk)
        size += len(chunk)
        while size >= per:
            batch = np.vstack(pending)
            yield batch[:per]
            pending, size = [batch[per:]], size - per
    if size:
        yield np.vstack(pending)


def _runs(key: np.ndarray) -> list[tuple[int, int, int]]:
    """``(value, start, stop)`` of each run of equal values in a sorted key."""
    if len(key) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    stops = np.r_[starts[1:], len(key)]
    return [(int(key[s]), int(s), int(e)) for s, e in zip(starts, stops, strict=True)]


class LogisticRewardModel(_LinearModelBase):
    """Cross-fitted L2-penalised logistic regression, for rewards in [0, 1] (clicks, plays).

    Each fold's model is ``P(r = 1) = expit(logit(rbar) + z_i @ theta)``, with
    ``rbar`` the training folds' mean reward and ``theta`` fitted per block by
    Newton's method (penalty ``alpha * |theta|^2 / 2``).

    Parameters
    ----------
    alpha
        L2 penalty, > 0.
    n_folds
        Cross-fitting folds (1 fits and predicts in-sample).
    features
        ``"per_action"`` or ``"shared"``; see the module docstring.
    by_position
        One model per position when the log has positions.
    random_state
        Seeds the assignment of rounds to folds.
    max_iter
        Newton iterations at most.
    tol
        Stop when no coefficient moves more than this.

    Examples
    --------
    >>> import numpy as np
    >>> from matinee.apps.artwork import LoggedFeedback
    >>> from matinee.apps.artwork.reward_models import LogisticRewardModel
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 1))
    >>> a = rng.integers(0, 2, 2000)
    >>> r = rng.random(2000) < np.where(a == 1, 0.8, 0.2)
    >>> log = LoggedFeedback(context=x, action=a, reward=r, propensity=np.full(2000, 0.5), n_actions=2)
    >>> q_hat = LogisticRewardModel().fit_predict(log)
    >>> np.round(q_hat.mean(axis=0), 1)
    array([0.2, 0.8])
    """

    def __init__(self, *, alpha: float = 1.0, n_folds: int = 5, features: str = "per_action",
                 by_position: bool = True, random_state: int | None = 0, max_iter: int = 25,
                 tol: float = 1e-8) -> None:
        super().__init__(alpha=alpha, n_folds=n_folds, features=features, by_position=by_position,
                         random_state=random_state)
        self.max_iter = max_iter
        self.tol = tol

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as given to ``__init__``."""
        return {**super().get_params(), "max_iter": self.max_iter, "tol": self.tol}

    def fit_predict(self, feedback: LoggedFeedback, sample_weight: np.ndarray | None = None) -> np.ndarray:
        """Cross-fitted predicted reward probabilities ``(n, n_actions)``.

        Parameters
        ----------
        feedback
            The log to fit on and predict for; rewards must lie in [0, 1].
        sample_weight
            Non-negative weight per round (bootstrap counts); default all 1.

        Returns
        -------
        numpy.ndarray
            ``(n, n_actions)`` probabilities; round ``i``'s row comes from the model of the folds
            other than its own, at its own position.

        Raises
        ------
        ParameterError
            For a bad hyperparameter (named), rewards outside [0, 1], or bad sample weights.
        """
        self._check(feedback)
        if ((feedback.reward < 0) | (feedback.reward > 1)).any():
            raise ParameterError("LogisticRewardModel needs rewards in [0, 1]", parameter="reward")
        weight = _sample_weight(sample_weight, len(feedback))
        design = _Design(feedback, self.features, self.by_position)
        fold = self._folds(len(feedback))
        theta = np.zeros((self.n_folds, design.n_blocks, design.p))
        offset = np.zeros(self.n_folds)
        for k in range(self.n_folds):
            train = weight * (fold != k) if self.n_folds > 1 else weight
            total = train.sum()
            rbar = float(train @ feedback.reward / total) if total > 0 else 0.5
            offset[k] = np.log(np.clip(rbar, 1e-6, 1 - 1e-6) / np.clip(1 - rbar, 1e-6, 1 - 1e-6))
            theta[k] = self._newton(design, feedback.reward, train, offset[k])
        self.coef_, self.intercept_, self.folds_ = theta, offset, fold
        eta = design.predict(theta, offset, fold)
        return expit(eta)

    def _newton(self, design: _Design, y: np.ndarray, c: np.ndarray, offset: float) -> np.ndarray:
        p, n_blocks = design.p, design.n_blocks
        keep = np.flatnonzero(c > 0)
        z, g, y, c = design.z[keep], design.block[keep], y[keep], c[keep]
        member = sp.csr_matrix((c, (g, np.arange(len(keep)))), shape=(n_blocks, len(keep)))
        outer = (z[:, :, None] * z[:, None, :]).reshape(len(keep), p * p)
        theta = np.zeros((n_blocks, p))
        eye = np.eye(p) * self.alpha
        for _ in range(self.max_iter):
            mu = expit(offset + np.einsum("np,np->n", z, theta[g]))
            grad = member @ ((mu - y)[:, None] * z) + self.alpha * theta
            hess = (member @ ((mu * (1 - mu))[:, None] * outer)).reshape(n_blocks, p, p) + eye
            step = np.linalg.solve(hess, grad[..., None])[..., 0]
            theta -= step
            if np.abs(step).max(initial=0.0) < self.tol:
                break
        return theta
