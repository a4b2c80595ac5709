"""``RecommenderBase``: the one base class every recommender implements.

The estimator contract (as scikit-learn's): ``__init__`` only stores keyword
hyperparameters, ``fit`` validates, sets learned state in ``name_`` attributes
and returns ``self``; randomness comes through ``random_state``; ``get_params``
and ``set_params`` work. A subclass implements three hooks on internal indices:

``_fit(matrix)``
    learn from the users x items CSR matrix of training weights;
``_score(users)``
    a dense ``(len(users), n_items)`` float32 array of scores, higher is better;
``_similar(items)``
    a dense ``(len(items), n_items)`` array of item-item similarities.

Everything else (unknown users, excluding what a user has seen, candidate
sets, top-k, external ids) lives here, batch-first. Models pickle, so a flow
stores a fitted model as an artifact like any other value.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from matinee.apps.recs.interactions import Interactions
from matinee.errors import MatineeError, NotFoundError, NotSupportedError, ParameterError


class NotFittedError(MatineeError):
    """A model was asked to recommend before ``fit``."""

    status = 409


@dataclass(frozen=True)
class Recommendations:
    """Top-k lists for a batch of users (or, from ``similar_items``, of items).

    ``items`` and ``scores`` are ``(n, min(k, n_items))``; rows with fewer
    candidates than that are padded with ``None`` items and ``-inf`` scores.
    ``fallback`` marks users the model did not know (unseen, or without any
    training interaction), who got the most popular items instead.
    """

    keys: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    fallback: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per recommendation: key, rank (from 1), item_id, score, fallback."""
        n, k = self.items.shape
        keep = np.isfinite(self.scores).ravel()
        return pd.DataFrame({
            "key": np.repeat(self.keys, k)[keep],
            "rank": np.tile(np.arange(1, k + 1), n)[keep],
            "item_id": self.items.ravel()[keep],
            "score": self.scores.ravel()[keep],
            "fallback": np.repeat(self.fallback, k)[keep],
        })

    def __len__(self) -> int:
        return len(self.keys)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of each row's ``k`` largest scores, best first (ties: lower index first)."""
    n, m = scores.shape
    k = min(k, m)
    if k == 0:
        return np.empty((n, 0), np.int64), np.empty((n, 0), scores.dtype)
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # argpartition picks arbitrary members of a tie at the k-th place; keep the lowest indices instead
        chosen = np.take_along_axis(scores, part, axis=1)
        kth = chosen.min(axis=1, keepdims=True)
        for row in np.flatnonzero((scores == kth).sum(axis=1) > (chosen == kth).sum(axis=1)):
            better = np.flatnonzero(scores[row] > kth[row])
            part[row] = np.concatenate([better, np.flatnonzero(scores[row] == kth[row])[:k - len(better)]])
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(values, order, axis=1)


class RecommenderBase:
    """Base class of matinee's recommenders; see the module docstring for the contract."""

    # -- estimator contract -------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values() if p.name != "self" and p.kind == p.KEYWORD_ONLY
                or p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> RecommenderBase:
        """Change hyperparameters (takes effect at the next ``fit``)."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ParameterError(
                    f"{type(self).__name__} has no hyperparameter {name!r}; it has {', '.join(valid)}", parameter=name
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- fitting ---------------------------------------------------------------------
    def fit(self, interactions: Interactions) -> RecommenderBase:
        """Learn from ``interactions``; returns ``self``.

        A fit that raises (a bad hyperparameter, say) leaves the model as it
        was before, fitted or not.
        """
        if not isinstance(interactions, Interactions):
            raise ParameterError(f"fit takes Interactions, not {type(interactions).__name__}",
                                 parameter="interactions")
        if len(interactions) == 0:
            raise ParameterError("cannot fit on zero interactions", parameter="interactions")
        before = {name: value for name, value in vars(self).items() if name.endswith("_")}
        matrix = interactions.matrix
        try:
            self.user_ids_ = interactions.user_ids
            self.item_ids_ = interactions.item_ids
            self._user_index_ = interactions._user_index
            self._item_index_ = interactions._item_index
            self.seen_ = matrix
            self.popularity_ = np.asarray((matrix > 0).sum(axis=0), dtype=np.float32).ravel()
            self._fit(matrix)
        except BaseException:
            for name in [name for name in vars(self) if name.endswith("_")]:
                delattr(self, name)
            vars(self).update(before)
            raise
        return self

    def _fit(self, matrix: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _score(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _similar(self, items: np.ndarray) -> np.ndarray:
        raise NotSupportedError(
            f"{type(self).__name__} does not compute item similarities; use an item-based model such as ItemKNN"
        )

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "item_ids_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(interactions) first")

    # -- recommending ------------------------------------------------------------------
    def recommend(
        self,
        users: Sequence[Hashable] | np.ndarray,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        candidates: Sequence[Hashable] | np.ndarray | None = None,
        unknown: str = "popular",
    ) -> Recommendations:
        """Top-``k`` items for each of ``users`` (external ids).

        Parameters
        ----------
        users
            External user ids.
        k
            Length of each list (positive).
        exclude_seen
            Leave out items the user interacted with in training.
        candidates
            Rank only these external item ids (unknown ids are ignored).
        unknown
            ``"popular"``: users unseen in training (not in the id map, or in
            it without any training interaction) get the most popular items,
            flagged in ``fallback``; ``"error"``: raise :class:`NotFoundError`.
        """
        self._check_fitted()
        _check_k(k)
        if unknown not in ("popular", "error"):
            raise ParameterError(f"unknown= must be 'popular' or 'error', not {unknown!r}", parameter="unknown")
        keys = _ids(users, "users")
        index = np.fromiter((self._user_index_.get(u, -1) for u in keys.tolist()), np.int64, len(keys))
        fallback = ~self._has_history(index)
        if fallback.any() and unknown == "error":
            first = int(np.flatnonzero(fallback)[0])
            why = "unknown user id" if index[first] < 0 else "no training interactions for user id"
            raise NotFoundError(f"{why} {keys[first]!r}", parameter="users")
        allowed = None
        if candidates is not None:
            cand = np.fromiter((self._item_index_.get(i, -1) for i in np.asarray(candidates).tolist()), np.int64)
            allowed = np.unique(cand[cand >= 0])
            if not len(allowed):
                raise ParameterError("none of the candidate items is known to the model", parameter="candidates")
        idx, scores = self.recommend_index(index, k, exclude_seen=exclude_seen, candidates=allowed)
        return Recommendations(keys, self._external(idx), scores, fallback)

    def recommend_index(
        self, users: np.ndarray, k: int, *, exclude_seen: bool = True, candidates: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The internal fast path: users as indices (``-1`` = unknown); returns item indices and scores.

        Users without training interactions are scored by popularity, like
        unknown ones. Padding (fewer than ``k`` candidates) is index ``-1``
        with score ``-inf``.
        """
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        known = self._has_history(users)
        scores = np.empty((len(users), len(self.item_ids_)), np.float32)
        if known.any():
            scores[known] = self._score(users[known])
        if (~known).any():
            scores[~known] = self.popularity_
        if exclude_seen and known.any():
            rows = np.flatnonzero(known)
            if len(rows) == 1:  # one member (a served request): slice the CSR arrays, ~50x faster
                start, stop = self.seen_.indptr[users[rows[0]]], self.seen_.indptr[users[rows[0]] + 1]
                scores[rows[0], self.seen_.indices[start:stop]] = -np.inf
            else:
                seen = self.seen_[users[known]].tocoo()
                scores[rows[seen.row], seen.col] = -np.inf
        if candidates is not None:
            mask = np.ones(scores.shape[1], bool)
            mask[candidates] = False
            scores[:, mask] = -np.inf
        idx, values = top_k(scores, k)
        idx = np.where(np.isfinite(values), idx, -1)
        return idx, values

    def _has_history(self, users: np.ndarray) -> np.ndarray:
        """Which of ``users`` (indices, ``-1`` = unknown) have at least one training interaction."""
        indptr = self.seen_.indptr
        safe = np.where(users >= 0, users, 0)
        return (users >= 0) & (indptr[safe + 1] > indptr[safe])

    def similar_items(self, items: Sequence[Hashable] | np.ndarray, k: int = 10) -> Recommendations:
        """The ``k`` items most similar to each of ``items`` (external ids), the item itself left out."""
        self._check_fitted()
        _check_k(k)
        keys = _ids(items, "items")
        index = np.fromiter((self._item_index_.get(i, -1) for i in keys.tolist()), np.int64, len(keys))
        if (index < 0).any():
            raise NotFoundError(f"unknown item id {keys[index < 0][0]!r}", parameter="items")
        sims = np.array(self._similar(index), dtype=np.float32, copy=True)
        sims[np.arange(len(index)), index] = -np.inf
        idx, values = top_k(sims, k)
        idx = np.where(np.isfinite(values), idx, -1)
        return Recommendations(keys, self._external(idx), values, np.zeros(len(keys), bool))

    def _external(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty(idx.shape, dtype=object)
        valid = idx >= 0
        out[valid] = self.item_ids_[idx[valid]]
        out[~valid] = None
        return out


def _check_k(k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ParameterError(f"k must be a positive whole number, not {k!r}", parameter="k")


def _ids(values: Any, name: str) -> np.ndarray:
    """A batch of external ids as a 1-d array; a lone id is refused rather than split into characters."""
    if isinstance(values, (str, bytes)) or np.ndim(values) != 1:
        raise ParameterError(
            f"{name} must be a list of ids, not {values!r}; for one id pass a list: [{values!r}]", parameter=name
        )
    return np.asarray(values)
