"""Ranking metrics, vectorized over users.

Every ranking metric takes the same two inputs:

``recommended``
    an ``(n_users, k)`` integer array of item indices, best first, one row per
    user, each row listing distinct items; ``-1`` pads rows shorter than ``k``
    (as :meth:`RecommenderBase.recommend_index` returns them);
``relevant``
    a users x items sparse matrix (CSR, or anything scipy converts) whose
    stored positive entries are the relevant items; row ``u`` belongs to row
    ``u`` of ``recommended``. Gains are binary: any positive value counts as 1.

and returns one float64 value per user, so an evaluation averages (or
bootstraps) them. A user with no relevant item scores 0 on every ranking
metric; :func:`matinee.apps.recs.evaluation.evaluate` only passes users with at
least one. ``k`` defaults to the width of ``recommended``; a smaller ``k`` looks
at the first ``k`` columns only.

With ``hits@k`` the number of relevant items among the first ``k`` and ``R``
the number of relevant items:

=================  ===========================================================
precision@k        ``hits@k / k`` (padding counts as a miss)
recall@k           ``hits@k / R``
hit rate@k         1 if ``hits@k > 0`` else 0
NDCG@k             ``DCG@k / IDCG@k``, ``DCG@k = sum over hit ranks r of
                   1 / log2(r + 1)`` (ranks from 1), the ideal DCG putting
                   ``min(k, R)`` relevant items first
MAP@k              the sum, over the ranks ``r <= k`` holding a relevant item,
                   of precision@r, divided by ``min(k, R)``
MRR                ``1 / r`` for the first relevant rank ``r <= k``, else 0
=================  ===========================================================

Beyond accuracy, :func:`catalogue_coverage` (the share of the catalogue
recommended to anyone), :func:`mean_popularity` and :func:`novelty` (the mean
self-information ``-log2`` of the recommended items' popularity share)
describe what a model recommends rather than how well.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from matinee.errors import ParameterError

__all__ = [
    "catalogue_coverage",
    "hit_rate_at_k",
    "hits",
    "map_at_k",
    "mean_popularity",
    "mrr",
    "ndcg_at_k",
    "novelty",
    "precision_at_k",
    "recall_at_k",
]


def hits(recommended: np.ndarray, relevant: Any, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which recommendations are relevant, and how many items each user has that are.

    The building block of every ranking metric here; exposed so a caller can
    compute several metrics from one lookup.

    Parameters
    ----------
    recommended
        ``(n_users, width)`` item indices, best first, ``-1`` padding.
    relevant
        Users x items sparse matrix; positive entries are relevant.
    k
        Look at the first ``k`` columns (default: all of them).

    Returns
    -------
    hit : numpy.ndarray
        ``(n_users, k)`` booleans: ``hit[u, r]`` is true when the item at rank
        ``r + 1`` is relevant to user ``u``.
    n_relevant : numpy.ndarray
        ``(n_users,)`` count of relevant items per user.

    Raises
    ------
    ParameterError
        Shapes that do not match, item indices outside the catalogue, a row
        that repeats an item, or a ``k`` that is not a positive whole number.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> relevant = sp.csr_matrix(np.array([[0, 1, 1, 0], [1, 0, 0, 0]]))
    >>> hit, n_relevant = hits(np.array([[1, 3, 2], [3, 2, -1]]), relevant)
    >>> hit.astype(int).tolist(), n_relevant.tolist()
    ([[1, 0, 1], [0, 0, 0]], [2, 1])
    """
    recommended, rel = _check(recommended, relevant, k)
    n_users, n_items = rel.shape
    rel.sum_duplicates()
    rel = (rel > 0).tocsr()
    rel.sort_indices()
    n_relevant = np.diff(rel.indptr).astype(np.int64)
    # Row-major keys of the relevant entries are sorted, so one searchsorted
    # answers every (user, item) membership question at once.
    keys = np.repeat(np.arange(n_users, dtype=np.int64), n_relevant) * n_items + rel.indices
    valid = recommended >= 0
    wanted = np.arange(n_users, dtype=np.int64)[:, None] * n_items + np.where(valid, recommended, 0)
    pos = np.searchsorted(keys, wanted)
    found = np.take(keys, np.minimum(pos, len(keys) - 1)) == wanted if len(keys) else np.zeros_like(valid)
    return found & valid, n_relevant


def precision_at_k(recommended: np.ndarray, relevant: Any, k: int | None = None) -> np.ndarray:
    """Precision@k per user: ``hits@k / k``.

    Parameters
    ----------
    recommended
        ``(n_users, width)`` item indices, best first, ``-1`` padding.
    relevant
        Users x items sparse matrix; positive entries are relevant.
    k
        Look at the first ``k`` columns (default: all of them).

    Returns
    -------
    numpy.ndarray
        ``(n_users,)`` float64.

    Raises
    ------
    ParameterError
        As for :func:`hits`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> relevant = sp.csr_matrix(np.array([[0, 1, 1, 0]]))
    >>> precision_at_k(np.array([[1, 3, 2, 0]]), relevant, k=2).tolist()
    [0.5]
    """
    return _precision(*hits(recommended, relevant, k))


def recall_at_k(recommended: np.ndarray, relevant: Any, k: int | None = None) -> np.ndarray:
    """Recall@k per user: ``hits@k / R``, with ``R`` the user's relevant items (0 when ``R`` is 0).

    Parameters
    ----------
    recommended
        ``(n_users, width)`` item indices, best first, ``-1`` padding.
    relevant
        Users x items sparse matrix; positive entries are relevant.
    k
        Look at the first ``k`` columns (default: all of them).

    Returns
    -------
    numpy.ndarray
        ``(n_users,)`` float64.

    Raises
    ------
    ParameterError
        As for :func:`hits`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> relevant = sp.csr_matrix(np.array([[0, 1, 1, 1]]))
    >>> recall_at_k(np.array([[1, 0, 2]]), relevant).round(4).tolist()
    [0.6667]
    """
    return _recall(*hits(recommended, relevant, k))


def hit_rate_at_k(recommended: np.ndarray, relevant: Any, k: int | None = None) -> np.ndarray:
    """Hit rate@k per user: 1 when any of the first ``k`` items is relevant, else 0.

    Parameters
    ----------
    recommended
        ``(n_users, width)`` item indices, best first, ``-1`` padding.
    relevant
        Users x items sparse matrix; positive entries are relevant.
    k
        Look at the first ``k`` columns (default: all of them).

    Returns
    -------
    numpy.ndarray
        ``(n_users,)`` float64 of zeros and ones.

    Raises
    ------
    ParameterError
        As for :func:`hits`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> relevant = sp.csr_matrix(np.array([[0, 0, 1], [1, 0, 0]]))
    >>> hit_rate_at_k(np.array([[0, 2], [2, 1]]), relevant).tolist()
    [1.0, 0.0]
    """
    return _hit_rate(*hits(recommended, relevant, k))


def ndcg_at_k(recommended: np.ndarray, relevant: Any, k: int | None = None) -> np.ndarray:
    """NDCG@k per user, binary gains and ``log2`` discounts.

    ``DCG@k`` sums ``1 / log2(r + 1)`` over the ranks ``r`` (from 1) holding a
    relevant item; the ideal DCG places ``min(k, R)`` relevant items first.

    Parameters
    ----------
    recommended
        ``(n_users, width)`` item indices, best first, ``-1`` padding.
    relevant
        Users x items sparse matrix; positive entries are relevant.
    k
        Look at the first ``k`` columns (default: all of them).

    Returns
    -------
    numpy.ndarray
        ``(n_users,)`` float64 in ``[0, 1]``.

    Raises
    ------
    ParameterError
        As for :func:`hits`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> relevant = sp.csr_matrix(np.array([[0, 1, 1, 0]]))
    >>> # hits at ranks 1 and 3: (1 + 1/log2(4)) / (1 + 1/log2(3))
    >>> ndcg_at_k(np.array([[1, 3, 2]]), relevant).round(4).tolist()
    [0.9197]
    """
    return _ndcg(*hits(recommended, relevant, k))


def map_at_k(recommended: np.ndarray, relevant: Any, k: int | None = None) -> np.ndarray:
    """Average precision@k per user (its mean over users is MAP@k).

    The sum of precision@r over the ranks ``r <= k`` holding a relevant item,
    divided by ``min(k, R)`` so that a perfect list scores 1.

    Parameters
    ----------
    recommended
        ``(n_users, width)`` item indices, best first, ``-1`` padding.
    relevant
        Users x items sparse matrix; positive entries are relevant.
    k
        Look at the first ``k`` columns (default: all of them).

    Returns
    -------
    numpy.ndarray
        ``(n_users,)`` float64 in ``[0, 1]``.

    Raises
    ------
    ParameterError
        As for :func:`hits`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> relevant = sp.csr_matrix(np.array([[0, 1, 1, 0]]))
    >>> # precision 1/1 at rank 1 and 2/3 at rank 3, over min(3, 2) = 2 relevant
    >>> map_at_k(np.array([[1, 3, 2]]), relevant).round(4).tolist()
    [0.8333]
    """
    return _average_precision(*hits(recommended, relevant, k))


def mrr(recommended: np.ndarray, relevant: Any, k: int | None = None) -> np.ndarray:
    """Reciprocal rank per user: ``1 / r`` for the first relevant rank ``r <= k``, else 0.

    Its mean over users is the mean reciprocal rank (MRR).

    Parameters
    ----------
    recommended
        ``(n_users, width)`` item indices, best first, ``-1`` padding.
    relevant
        Users x items sparse matrix; positive entries are relevant.
    k
        Look at the first ``k`` columns (default: all of them).

    Returns
    -------
    numpy.ndarray
        ``(n_users,)`` float64 in ``[0, 1]``.

    Raises
    ------
    ParameterError
        As for :func:`hits`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> relevant = sp.csr_matrix(np.array([[0, 1, 1, 0], [1, 0, 0, 0]]))
    >>> mrr(np.array([[3, 2, 1], [3, 2, -1]]), relevant).tolist()
    [0.5, 0.0]
    """
    return _reciprocal_rank(*hits(recommended, relevant, k))


def catalogue_coverage(recommended: np.ndarray, n_items: int, k: int | None = None) -> float:
    """Share of the catalogue's ``n_items`` items recommended to at least one user.

    Parameters
    ----------
    recommended
        ``(n_users, width)`` item indices, ``-1`` padding (ignored).
    n_items
        Size of the catalogue.
    k
        Look at the first ``k`` columns (default: all).

    Returns
    -------
    float
        Distinct recommended items / ``n_items``.

    Raises
    ------
    ParameterError
        ``n_items`` not positive, or an item index outside it.

    Examples
    --------
    >>> import numpy as np
    >>> catalogue_coverage(np.array([[0, 1], [1, -1]]), n_items=4)
    0.5
    """
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items <= 0:
        raise ParameterError(f"n_items must be a positive whole number, not {n_items!r}", parameter="n_items")
    recommended = _recommended(recommended, k, n_items)
    items = recommended[recommended >= 0]
    return float(len(np.unique(items)) / n_items)


def mean_popularity(recommended: np.ndarray, popularity: np.ndarray, k: int | None = None) -> np.ndarray:
    """Mean popularity of each user's recommended items.

    Parameters
    ----------
    recommended
        ``(n_users, width)`` item indices, ``-1`` padding (ignored).
    popularity
        ``(n_items,)`` popularity of every item, typically the number of
        training users who interacted with it.
    k
        Look at the first ``k`` columns (default: all).

    Returns
    -------
    numpy.ndarray
        ``(n_users,)`` float64; NaN for a user with no recommended item.

    Raises
    ------
    ParameterError
        ``popularity`` is not a 1-d array of non-negative numbers, or an
        item index falls outside it.

    Examples
    --------
    >>> import numpy as np
    >>> mean_popularity(np.array([[0, 1], [2, -1]]), np.array([10, 20, 4])).tolist()
    [15.0, 4.0]
    """
    popularity = _popularity(popularity)
    recommended = _recommended(recommended, k, len(popularity))
    return _row_mean(recommended, popularity)


def novelty(recommended: np.ndarray, popularity: np.ndarray, n_users: int, k: int | None = None) -> np.ndarray:
    """Mean self-information of each user's recommended items.

    The self-information of item ``i`` is ``-log2(popularity[i] / n_users)``:
    recommending what few users know is more novel. An item nobody interacted
    with counts as known to one user, so its self-information is capped at
    ``log2(n_users)`` rather than infinite.

    Parameters
    ----------
    recommended
        ``(n_users, width)`` item indices, ``-1`` padding (ignored).
    popularity
        ``(n_items,)`` number of (training) users who interacted with each item.
    n_users
        Number of users ``popularity`` counts over.
    k
        Look at the first ``k`` columns (default: all).

    Returns
    -------
    numpy.ndarray
        ``(n_users,)`` float64 bits; NaN for a user with no recommended item.

    Raises
    ------
    ParameterError
        ``n_users`` not positive, ``popularity`` negative or above ``n_users``,
        or an item index outside it.

    Examples
    --------
    >>> import numpy as np
    >>> # shares 1/2 and 1/8 -> 1 and 3 bits
    >>> novelty(np.array([[0, 1]]), np.array([4, 1]), n_users=8).tolist()
    [2.0]
    """
    if isinstance(n_users, bool) or not isinstance(n_users, (int, np.integer)) or n_users <= 0:
        raise ParameterError(f"n_users must be a positive whole number, not {n_users!r}", parameter="n_users")
    popularity = _popularity(popularity)
    if len(popularity) and popularity.max() > n_users:
        raise ParameterError(f"popularity exceeds n_users ({popularity.max():g} > {n_users})",
                             parameter="popularity")
    recommended = _recommended(recommended, k, len(popularity))
    information = -np.log2(np.maximum(popularity, 1.0) / n_users)
    return _row_mean(recommended, information)


# -- the formulas, on a hit matrix (also used by evaluation) ----------------------------
def _precision(hit: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return np.asarray(hit.sum(axis=1) / max(hit.shape[1], 1), dtype=np.float64)


def _recall(hit: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return _ratio(hit.sum(axis=1), n_relevant)


def _hit_rate(hit: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return np.asarray(hit.any(axis=1), dtype=np.float64)


def _ndcg(hit: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    width = hit.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, width + 2))
    ideal = np.concatenate(([0.0], np.cumsum(discounts)))[np.minimum(n_relevant, width)]
    return _ratio(hit @ discounts, ideal)


def _average_precision(hit: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    width = hit.shape[1]
    precision = np.cumsum(hit, axis=1) / np.arange(1, width + 1)
    return _ratio((precision * hit).sum(axis=1), np.minimum(n_relevant, width))


def _reciprocal_rank(hit: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    first = hit.argmax(axis=1)
    return np.asarray(np.where(hit.any(axis=1), 1.0 / (first + 1), 0.0), dtype=np.float64)


RANKING = {
    "ndcg": _ndcg,
    "recall": _recall,
    "precision": _precision,
    "map": _average_precision,
    "mrr": _reciprocal_rank,
    "hit_rate": _hit_rate,
}
"""The per-user formulas by name, each taking ``(hit, n_relevant)`` as :func:`hits` returns them."""


# -- validation and helpers ---------------------------------------------------------
def _check(recommended: Any, relevant: Any, k: int | None) -> tuple[np.ndarray, sp.csr_matrix]:
    if not sp.issparse(relevant):
        raise ParameterError(
            f"relevant must be a scipy sparse users x items matrix, not {type(relevant).__name__}",
            parameter="relevant",
        )
    rel = sp.csr_matrix(relevant, copy=True)
    recommended = _recommended(recommended, k, rel.shape[1])
    if recommended.shape[0] != rel.shape[0]:
        raise ParameterError(
            f"recommended has {recommended.shape[0]} rows but relevant has {rel.shape[0]}: "
            "one row per user in both, in the same order",
            parameter="recommended",
        )
    return recommended, rel


def _recommended(recommended: Any, k: int | None, n_items: int) -> np.ndarray:
    recommended = np.asarray(recommended)
    if recommended.ndim != 2 or (recommended.size and not np.issubdtype(recommended.dtype, np.integer)):
        raise ParameterError(
            f"recommended must be a 2-d integer array (users x ranks), not {recommended.ndim}-d "
            f"{recommended.dtype}",
            parameter="recommended",
        )
    recommended = recommended.astype(np.int64, copy=False)
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ParameterError(f"k must be a positive whole number, not {k!r}", parameter="k")
        recommended = recommended[:, :k]
    if recommended.size:
        if recommended.min() < -1 or recommended.max() >= n_items:
            raise ParameterError(
                f"recommended holds item indices outside 0..{n_items - 1} (-1 is the only padding)",
                parameter="recommended",
            )
        ordered = np.sort(recommended, axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
        if repeated.any():
            row = int(np.flatnonzero(repeated.any(axis=1))[0])
            raise ParameterError(f"recommended repeats an item in row {row}", parameter="recommended")
    return recommended


def _popularity(popularity: Any) -> np.ndarray:
    values = np.asarray(popularity, dtype=np.float64)
    if values.ndim != 1 or np.isnan(values).any() or (values < 0).any():
        raise ParameterError("popularity must be a 1-d array of non-negative numbers, one per item",
                             parameter="popularity")
    return values


def _row_mean(recommended: np.ndarray, values: np.ndarray) -> np.ndarray:
    valid = recommended >= 0
    total = np.where(valid, values[np.where(valid, recommended, 0)], 0.0).sum(axis=1)
    count = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
