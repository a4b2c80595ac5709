"""``RP3beta``: three-step random walks on the user-item graph, with popular items damped."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from matinee.apps.recs.models import _params
from matinee.apps.recs.models.knn import ItemItemModel, Transform, top_neighbours


class RP3beta(ItemItemModel):
    """Item-item weights from a random walk item -> user -> item, divided by popularity^beta.

    On the bipartite graph of the training matrix ``X``, the walk moves from a
    user to an item with probability proportional to the interaction weight
    (``P_ui = X / row sums``) and from an item to a user likewise
    (``P_iu = X^T / column sums``). Both are raised elementwise to ``alpha``.
    The weight of ``i -> j`` is ``(P_iu^alpha @ P_ui^alpha)[i, j] / pop_j^beta``
    with ``pop_j`` the number of users of ``j``; ``beta > 0`` lifts less popular
    items. Each item keeps its ``neighbors`` strongest outgoing weights, and a
    user's score for ``j`` is ``sum_i X[u, i] W[i, j]`` (Paudel et al., 2017).

    Parameters
    ----------
    alpha : float, default 0.5
        Exponent on the transition probabilities (``> 0``); below 1 it
        flattens them, which on MovieLens ranks clearly better than 1.
    beta : float, default 0.5
        Popularity penalty exponent (``>= 0``; ``0`` is the plain P3 walk).
    neighbors : int, default 100
        How many strongest targets each item keeps.

    Attributes
    ----------
    weights_ : scipy.sparse.csr_matrix
        ``(n_items, n_items)`` pruned walk weights ``W``, zero on the diagonal.

    Examples
    --------
    >>> import pandas as pd
    >>> from matinee.apps.recs import Interactions
    >>> from matinee.apps.recs.models import RP3beta
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 4],
    ...                     "item_id": ["a", "b", "a", "b", "b", "c", "a"]})
    >>> model = RP3beta(alpha=1.0, beta=0.5).fit(Interactions.from_frame(log))
    >>> model.recommend([4], k=2).items.tolist()
    [['b', 'c']]
    """

    def __init__(self, *, alpha: float = 0.5, beta: float = 0.5, neighbors: int = 100) -> None:
        self.alpha = alpha
        self.beta = beta
        self.neighbors = neighbors

    def _fit(self, matrix: sp.csr_matrix) -> None:
        alpha = _params.real(self, "alpha", self.alpha, strict=True)
        beta = _params.real(self, "beta", self.beta)
        neighbors = _params.whole(self, "neighbors", self.neighbors)
        user_to_item = _transitions(matrix, alpha)
        item_to_user = _transitions(matrix.T.tocsr(), alpha)
        counts = self.popularity_.astype(np.float64)
        damping = np.zeros(len(counts), np.float32)
        damping[counts > 0] = counts[counts > 0] ** -beta
        self.weights_ = top_neighbours(item_to_user, user_to_item, neighbors, _columns_times(damping),
                                       "RP3beta weights")

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.weights_[items].toarray(), dtype=np.float32)


def _transitions(matrix: sp.csr_matrix, alpha: float) -> sp.csr_matrix:
    """Rows scaled to sum to one, then raised elementwise to ``alpha``."""
    out = matrix.astype(np.float64, copy=True)
    out.eliminate_zeros()
    sums = np.asarray(out.sum(axis=1)).ravel()
    out.data /= np.repeat(sums, np.diff(out.indptr))
    if alpha != 1.0:
        out.data **= alpha
    return out.astype(np.float32)


def _columns_times(factors: np.ndarray) -> Transform:
    def transform(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        values *= factors[cols]

    return transform
