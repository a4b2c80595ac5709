"""``ItemKNN``: item-based nearest neighbours with a shrunk cosine similarity.

Also home of what the item-item models share: scoring with a sparse
items x items weight matrix, and building such a matrix block of rows by block
of rows, keeping only each row's strongest entries, so memory stays bounded by
``items x block`` rather than ``items^2``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from matinee.apps.recs.base import RecommenderBase
from matinee.apps.recs.models import _params
from matinee.progress import progress

#: Bytes of scratch (at worst, for a dense block of entries) used per block of rows of a weight matrix.
BLOCK_BYTES = 128 * 2**20

#: Rescales a block's entries in place, given their ``values``, ``rows`` and ``cols``.
Transform = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


class ItemItemModel(RecommenderBase):
    """Shared scoring of item-item models: ``scores = X[users] @ weights_``.

    ``weights_`` is a sparse ``(n_items, n_items)`` float32 CSR matrix whose
    entry ``[i, j]`` is how much having interacted with ``i`` recommends ``j``.
    """

    weights_: sp.csr_matrix

    def _score(self, users: np.ndarray) -> np.ndarray:
        product = self.seen_[users] @ self.weights_
        return np.asarray(product.toarray(), dtype=np.float32)


def top_neighbours(
    left: sp.csr_matrix,
    right: sp.csr_matrix,
    neighbors: int,
    transform: Transform | None = None,
    description: str = "item neighbours",
) -> sp.csr_matrix:
    """The square product ``left @ right``, each row pruned to its ``neighbors`` largest positive entries.

    Rows are computed a block at a time and only their nonzero entries are
    touched. ``transform(values, rows, cols)`` may rescale a block's entries in
    place before pruning. The diagonal is always dropped; ties at the cut keep
    the lower column index.
    """
    n = left.shape[0]
    step = max(1, min(n, BLOCK_BYTES // (16 * max(n, 1))))
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in progress(range(0, n, step), description, total=-(-n // step)):
        stop = min(start + step, n)
        block = sp.csr_matrix(left[start:stop] @ right, dtype=np.float32)
        block.sort_indices()
        rows = np.repeat(np.arange(start, stop), np.diff(block.indptr))
        values, cols = block.data, block.indices
        if transform is not None:
            transform(values, rows, cols)
        keep = (cols != rows) & (values > 0)
        values, cols, rows = values[keep], cols[keep], rows[keep]
        counts = np.bincount(rows - start, minlength=stop - start)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        chosen = np.ones(len(values), bool)
        for row in np.flatnonzero(counts > neighbors):
            segment = values[bounds[row]:bounds[row + 1]]
            kth = np.partition(segment, len(segment) - neighbors)[len(segment) - neighbors]
            mask = segment > kth
            mask[np.flatnonzero(segment == kth)[:neighbors - mask.sum()]] = True
            chosen[bounds[row]:bounds[row + 1]] = mask
        kept.append((values[chosen], rows[chosen], cols[chosen]))
    if not kept:
        return sp.csr_matrix((n, n), dtype=np.float32)
    values, rows, cols = (np.concatenate(parts) for parts in zip(*kept, strict=True))
    return sp.csr_matrix((values, (rows, cols)), shape=(n, n), dtype=np.float32)


class ItemKNN(ItemItemModel):
    """Item-based k-nearest-neighbours with a shrunk cosine similarity.

    The similarity of items ``i`` and ``j`` (columns of the users x items
    training matrix) is ``x_i . x_j / (|x_i| |x_j| + shrink)``: the shrink term
    damps similarities resting on few co-occurrences. Each item keeps only its
    ``neighbors`` most similar items; a user's score for ``j`` is the sum of
    the similarities between ``j`` and the items the user interacted with
    (weighted by the interaction weights).

    Parameters
    ----------
    neighbors : int, default 100
        How many most similar items each item keeps.
    shrink : float, default 50.0
        Added to the cosine denominator (``>= 0``).
    normalize : bool, default True
        Divide by the norms (cosine). ``False`` uses the plain dot products
        (co-occurrence counts on 0/1 data) and ignores ``shrink``.

    Attributes
    ----------
    similarity_ : scipy.sparse.csr_matrix
        ``(n_items, n_items)``; row ``i`` holds the ``neighbors`` items most
        similar to ``i``. Never includes ``i`` itself.
    weights_ : scipy.sparse.csr_matrix
        ``similarity_.T``, the matrix users' rows are multiplied with.

    Examples
    --------
    >>> import pandas as pd
    >>> from matinee.apps.recs import Interactions
    >>> from matinee.apps.recs.models import ItemKNN
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 4],
    ...                     "item_id": ["a", "b", "a", "b", "b", "c", "a"]})
    >>> model = ItemKNN(neighbors=10, shrink=0.0).fit(Interactions.from_frame(log))
    >>> model.recommend([4], k=2).items.tolist()
    [['b', 'c']]
    >>> model.similar_items(["a"], k=1).items.tolist()
    [['b']]
    """

    def __init__(self, *, neighbors: int = 100, shrink: float = 50.0, normalize: bool = True) -> None:
        self.neighbors = neighbors
        self.shrink = shrink
        self.normalize = normalize

    def _fit(self, matrix: sp.csr_matrix) -> None:
        neighbors = _params.whole(self, "neighbors", self.neighbors)
        shrink = _params.real(self, "shrink", self.shrink)
        normalize = _params.flag(self, "normalize", self.normalize)
        transform = _cosine(matrix, shrink) if normalize else None
        self.similarity_ = top_neighbours(matrix.T.tocsr(), matrix, neighbors, transform, "ItemKNN similarities")
        self.weights_ = self.similarity_.T.tocsr()

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.similarity_[items].toarray(), dtype=np.float32)


def _cosine(matrix: sp.csr_matrix, shrink: float) -> Transform:
    """Turns dot products between item columns into shrunk cosines, in place."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=0), dtype=np.float32).ravel())
    shrink32 = np.float32(shrink)

    def transform(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        denominator = norms[rows] * norms[cols] + shrink32
        np.divide(values, denominator, out=values, where=denominator > 0)

    return transform
