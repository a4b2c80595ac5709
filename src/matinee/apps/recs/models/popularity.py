"""``MostPopular``: the same ranking for everyone, by how many users interacted with each item."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from matinee.apps.recs.base import RecommenderBase


class MostPopular(RecommenderBase):
    """Rank items by the number of distinct users who interacted with them in training.

    The baseline every other model must beat, and the ranking every model falls
    back to for users it does not know. Ties go to the item with the lower
    internal index (the earlier id in sorted order). It has no hyperparameters
    and does not compute item similarities.

    Attributes
    ----------
    popularity_ : numpy.ndarray
        ``(n_items,)`` float32 user counts, the score of every item.

    Examples
    --------
    >>> import pandas as pd
    >>> from matinee.apps.recs import Interactions
    >>> from matinee.apps.recs.models import MostPopular
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 3, 3], "item_id": ["a", "b", "a", "a", "c"]})
    >>> model = MostPopular().fit(Interactions.from_frame(log))
    >>> model.recommend([2], k=2).items.tolist()
    [['b', 'c']]
    >>> model.recommend([2], k=2, exclude_seen=False).scores.tolist()
    [[3.0, 1.0]]
    """

    def __init__(self) -> None:
        pass

    def _fit(self, matrix: sp.csr_matrix) -> None:
        # ``popularity_`` (user counts per item) is learned by ``RecommenderBase.fit``.
        return None

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.repeat(self.popularity_[None, :], len(users), axis=0)
