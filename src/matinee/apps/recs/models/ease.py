"""``EASE``: a shallow linear autoencoder over items, solved in closed form.

Steck (2019), "Embarrassingly Shallow Autoencoders for Sparse Data": with the
users x items training matrix ``X`` and ``P = (X^T X + l2 I)^-1``, the item-item
weights are ``B = I - P diag(1 / diag(P))`` (zero diagonal), and a user's scores
are ``X[u] @ B``.

Two exact routes to ``B``, chosen by shape:

* primal (the formula as written): an ``n x n`` Cholesky factorisation and
  inverse, in place;
* dual, when there are at most half as many users as items (an eighth, for
  catalogues above ``FLOAT64_MAX_DIM`` items, to bound memory): by the
  Woodbury identity ``P = (I - X^T K X) / l2`` with ``K = (X X^T + l2 I)^-1``,
  only a ``users x users`` system is solved, and ``B = M / (1 - diag(M))``
  column-wise with ``M = X^T K X``. On MovieLens-small (600 users, 6k items)
  this is about ten times faster than the primal route.

Items without training interactions have an all-zero row and column in ``B``
and are left out of the computation, so the cost and ``max_items`` count only
items that occur in training.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from matinee.apps.recs.base import RecommenderBase
from matinee.apps.recs.models import _params
from matinee.errors import MatineeError, ParameterError

#: Up to this many rows a system is factorised in float64, beyond it in float32 (half the memory).
FLOAT64_MAX_DIM = 8192
#: Rows of the Gram matrix computed per sparse product.
_GRAM_BLOCK = 2048


class EASE(RecommenderBase):
    """Embarrassingly shallow autoencoder: closed-form item-item regression.

    Learns a dense items x items matrix ``B`` with zero diagonal that best
    reconstructs each user's row from the user's other items under an L2
    penalty; scores are ``X[u] @ B``. Usually the most accurate model here on
    catalogues of up to some tens of thousands of items; its memory grows as
    ``items^2`` (4 bytes each), so it declines to fit above ``max_items``.

    Parameters
    ----------
    l2 : float, default 250.0
        L2 regularisation ``lambda`` (``> 0``). 250 is a good value for
        MovieLens-sized data with 0/1 weights; larger catalogues and heavier
        weights want larger values.
    max_items : int, default 20000
        Refuse (with a :class:`~matinee.errors.ParameterError`) to fit when more
        items than this have training interactions; 20,000 items take 1.6 GB.

    Attributes
    ----------
    active_items_ : numpy.ndarray
        Internal indices of the items with training interactions, the rows and
        columns of ``weights_``.
    weights_ : numpy.ndarray
        ``(len(active_items_), len(active_items_))`` float32 matrix ``B``.

    Raises
    ------
    ParameterError
        At ``fit``: ``l2`` not positive, ``max_items`` not a positive whole
        number, or more items than ``max_items``.

    Examples
    --------
    >>> import pandas as pd
    >>> from matinee.apps.recs import Interactions
    >>> from matinee.apps.recs.models import EASE
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 4],
    ...                     "item_id": ["a", "b", "a", "b", "b", "c", "a"]})
    >>> model = EASE(l2=1.0).fit(Interactions.from_frame(log))
    >>> model.recommend([4], k=1).items.tolist()
    [['b']]
    >>> EASE(max_items=2).fit(Interactions.from_frame(log))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    matinee.errors.ParameterError: EASE: 3 items have training interactions, more than max_items=2 ...
    """

    def __init__(self, *, l2: float = 250.0, max_items: int = 20_000) -> None:
        self.l2 = l2
        self.max_items = max_items

    def _fit(self, matrix: sp.csr_matrix) -> None:
        l2 = _params.real(self, "l2", self.l2, strict=True)
        max_items = _params.whole(self, "max_items", self.max_items)
        active = np.flatnonzero(self.popularity_ > 0)
        n = len(active)
        if n > max_items:
            raise ParameterError(
                f"EASE: {n} items have training interactions, more than max_items={max_items} "
                f"(its dense items x items matrix would take {4 * n * n / 2**30:.1f} GiB); "
                "raise max_items, or use ItemKNN, RP3beta or ALS for a catalogue this large",
                parameter="max_items",
            )
        x = matrix[:, active] if n < matrix.shape[1] else matrix
        x = x[np.diff(x.indptr) > 0].astype(np.float32)
        self.active_items_ = active
        few_users = x.shape[0] * (2 if n <= FLOAT64_MAX_DIM else 8) <= n
        self.weights_ = _dual(x, l2) if few_users else _primal(x, l2)

    def _score(self, users: np.ndarray) -> np.ndarray:
        rows = self.seen_[users]
        if len(self.active_items_) == rows.shape[1]:
            return np.asarray(rows @ self.weights_, dtype=np.float32)
        out = np.zeros(rows.shape, np.float32)
        out[:, self.active_items_] = rows[:, self.active_items_] @ self.weights_
        return out

    def _similar(self, items: np.ndarray) -> np.ndarray:
        out = np.zeros((len(items), len(self.item_ids_)), np.float32)
        position = np.minimum(np.searchsorted(self.active_items_, items), len(self.active_items_) - 1)
        found = self.active_items_[position] == items
        out[np.ix_(found, self.active_items_)] = self.weights_[position[found]]
        return out


def _primal(x: sp.csr_matrix, l2: float) -> np.ndarray:
    """``B`` from the ``n x n`` system, factorised and inverted in place."""
    n = x.shape[1]
    dtype = np.float64 if n <= FLOAT64_MAX_DIM else np.float32
    by_item = x.T.tocsr()
    gram = np.empty((n, n), dtype)
    for start in range(0, n, _GRAM_BLOCK):
        gram[start:start + _GRAM_BLOCK] = (by_item[start:start + _GRAM_BLOCK] @ x).toarray()
    gram[np.diag_indices(n)] += l2
    inverse = _inverse_in_place(gram, "l2")
    diagonal = np.diag(inverse).copy()
    inverse /= -diagonal[None, :]
    inverse[np.diag_indices(n)] = 0.0
    return inverse.astype(np.float32, copy=False)


def _dual(x: sp.csr_matrix, l2: float) -> np.ndarray:
    """``B`` through the ``users x users`` system (Woodbury), for few users and many items."""
    u = x.shape[0]
    gram = (x @ x.T).toarray().astype(np.float64)
    gram[np.diag_indices(u)] += l2
    kernel = _inverse_in_place(gram, "l2").astype(np.float32)
    dense = x.toarray()
    projected = kernel @ dense
    diagonal = np.einsum("ij,ij->j", dense, projected, dtype=np.float64)
    m = dense.T @ projected
    del dense, projected
    m /= (1.0 - diagonal).astype(np.float32)[None, :]
    m[np.diag_indices(len(m))] = 0.0
    return m


def _inverse_in_place(a: np.ndarray, parameter: str) -> np.ndarray:
    """The inverse of the symmetric positive definite ``a``, overwriting ``a`` (Cholesky, LAPACK)."""
    potrf, potri = scipy.linalg.get_lapack_funcs(("potrf", "potri"), (a,))
    # ``a`` is symmetric and C-ordered, so ``a.T`` is the same matrix in Fortran order and LAPACK
    # works on it without a copy; only its upper triangle is read and written.
    factor, info = potrf(a.T, lower=0, clean=0, overwrite_a=1)
    if info == 0:
        factor, info = potri(factor, lower=0, overwrite_c=1)
    if info != 0:
        raise MatineeError(f"the regularised Gram matrix is not positive definite (LAPACK info {info}); "
                           f"increase {parameter}", parameter=parameter)
    n = len(factor)
    for start in range(0, n, _GRAM_BLOCK):  # mirror the upper triangle into the lower, a block at a time
        stop = min(start + _GRAM_BLOCK, n)
        factor[start:stop, :start] = factor[:start, start:stop].T
        block = factor[start:stop, start:stop]
        block[:] = np.triu(block) + np.triu(block, 1).T
    return factor.T
