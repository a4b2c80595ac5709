"""Evaluating a fitted recommender on a split: every unseen item ranked for every test user.

:func:`evaluate` asks the model for each test user's top ``max(k)`` items
among *all* the items that user did not interact with in training, scores the
lists against the user's test interactions with the metrics of
:mod:`matinee.apps.recs.metrics`, and averages over users. Users are scored in
chunks, so the dense users x items score array never exceeds one chunk, however
large the catalogue.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from matinee import current
from matinee.apps.recs import metrics as m
from matinee.apps.recs.base import RecommenderBase
from matinee.apps.recs.interactions import Interactions
from matinee.apps.recs.splits import Split
from matinee.errors import ParameterError
from matinee.progress import progress

__all__ = ["CELLS_PER_CHUNK", "METRICS", "evaluate"]

METRICS = ("ndcg", "recall", "precision", "map", "mrr", "hit_rate", "coverage", "mean_popularity", "novelty")
"""Every metric :func:`evaluate` knows, by the name it reports."""

CELLS_PER_CHUNK = 1 << 22
"""Default budget of one chunk's score array, in users x items cells (16 MiB of float32)."""


def evaluate(
    model: RecommenderBase,
    split: Split | tuple[Interactions, Interactions],
    k: int | Sequence[int] = (10, 20),
    metrics: Sequence[str] = METRICS,
    users: Sequence[Hashable] | np.ndarray | None = None,
    batch_size: int | None = None,
    log_prefix: str | None = "",
) -> pd.DataFrame:
    """Score ``model`` on the test part of ``split``, ranking all items unseen in training.

    The protocol, for every test user (a user with at least one test
    interaction on an item not in that user's training interactions):

    1. the model ranks every item the user did not interact with in
       ``train`` (its fast path ``recommend_index(..., exclude_seen=True)``);
    2. the relevant items are the user's test items that were not already in
       training (those could not be recommended, so no model is charged for
       them);
    3. each ranking metric is computed per user at each ``k`` and averaged
       over users; ``mrr`` is cut at ``k`` too.

    ``coverage`` is the share of the catalogue in anyone's top ``k``;
    ``mean_popularity`` and ``novelty`` use the number of training users who
    interacted with each item (see :mod:`matinee.apps.recs.metrics`), averaged
    over users with at least one recommended item.

    Inside a running flow step each value is logged with
    ``current.log_metrics`` as ``"<log_prefix><metric>@<k>"`` (``log_prefix=None``
    logs nothing); on a terminal a progress bar follows the chunks.

    Parameters
    ----------
    model
        A recommender fitted on ``split.train``.
    split
        A :class:`~matinee.apps.recs.splits.Split`, or a ``(train, test)`` pair
        over the same id maps.
    k
        One cut-off or several.
    metrics
        Names from :data:`METRICS`; default all.
    users
        Evaluate only these external user ids (those without a test
        interaction are left out); default every test user.
    batch_size
        Users per chunk. Default: as many as keep a chunk's score array under
        :data:`CELLS_PER_CHUNK` cells (at least one user).

    Returns
    -------
    pandas.DataFrame
        One row per metric and ``k`` in the order asked: columns ``metric``,
        ``k``, ``value`` and ``users`` (how many users the value averages).

    Raises
    ------
    ParameterError
        A bad ``k``, ``metrics`` name, ``users`` id or ``batch_size``; train
        and test over different id maps; a model fitted on other data than
        ``train``; or no test user to evaluate.
    NotFittedError
        The model is not fitted.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from matinee.apps.recs import Interactions, RecommenderBase
    >>> from matinee.apps.recs.splits import leave_one_out
    >>> class MostPopular(RecommenderBase):
    ...     def _fit(self, matrix): pass
    ...     def _score(self, users): return np.broadcast_to(self.popularity_, (len(users), len(self.popularity_)))
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3], "item_id": [7, 8, 7, 9, 8, 7],
    ...                     "timestamp": [1, 2, 1, 2, 1, 2]})
    >>> split = leave_one_out(Interactions.from_frame(log))
    >>> model = MostPopular().fit(split.train)
    >>> evaluate(model, split, k=(1, 2), metrics=("recall", "ndcg"))
       metric  k     value  users
    0  recall  1  0.666667      3
    1  recall  2  1.000000      3
    2    ndcg  1  0.666667      3
    3    ndcg  2  0.876977      3
    """
    train, test = _parts(split)
    ks = _cutoffs(k)
    names = _metric_names(metrics)
    _check_model(model, train)
    relevant = _relevant(train, test)
    rows = _test_users(train, relevant, users)
    n_users, n_items = len(rows), train.n_items
    if batch_size is None:
        batch_size = max(1, CELLS_PER_CHUNK // max(n_items, 1))
    elif isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ParameterError(f"batch_size must be a positive whole number, not {batch_size!r}",
                             parameter="batch_size")

    popularity = np.asarray((train.matrix > 0).sum(axis=0), dtype=np.float64).ravel()
    active_users = max(int(np.count_nonzero(np.diff(train.matrix.indptr))), 1)
    width = max(ks)
    sums = {(name, kk): 0.0 for name in names for kk in ks}
    counts = {(name, kk): 0 for name in names for kk in ks}
    first_rank = np.full(n_items, width, dtype=np.int64)  # best rank at which each item was recommended

    starts = range(0, n_users, batch_size)
    chunks: Iterable[int] = starts
    if len(starts) > 1:  # a bar on a terminal, nothing in CI or logs
        chunks = progress(starts, f"evaluating {type(model).__name__}", total=len(starts))
    for start in chunks:
        chunk = rows[start:start + batch_size]
        recommended, _ = model.recommend_index(chunk, width, exclude_seen=True)
        if recommended.shape[1] < width:  # a catalogue smaller than k
            pad = np.full((len(chunk), width - recommended.shape[1]), -1, recommended.dtype)
            recommended = np.hstack([recommended, pad])
        hit, n_relevant = m.hits(recommended, relevant[chunk])
        valid = recommended >= 0
        ranks = np.broadcast_to(np.arange(width), recommended.shape)
        np.minimum.at(first_rank, recommended[valid], ranks[valid])
        for kk in ks:
            for name in names:
                if name in m.RANKING:
                    values = m.RANKING[name](hit[:, :kk], n_relevant)
                elif name == "mean_popularity":
                    values = m.mean_popularity(recommended, popularity, kk)
                elif name == "novelty":
                    values = m.novelty(recommended, popularity, active_users, kk)
                else:
                    continue
                finite = values[~np.isnan(values)]
                sums[name, kk] += float(finite.sum())
                counts[name, kk] += len(finite)

    records = []
    for name in names:
        for kk in ks:
            if name == "coverage":
                value, count = float(np.count_nonzero(first_rank < kk) / max(n_items, 1)), n_users
            else:
                count = counts[name, kk]
                value = sums[name, kk] / count if count else math.nan
            records.append({"metric": name, "k": kk, "value": value, "users": count})
    table = pd.DataFrame.from_records(records, columns=["metric", "k", "value", "users"])
    _log(table, log_prefix)
    return table


# -- pieces -------------------------------------------------------------------------
def _parts(split: Any) -> tuple[Interactions, Interactions]:
    if isinstance(split, Split):
        train, test = split.train, split.test
    elif isinstance(split, (tuple, list)) and len(split) == 2:
        train, test = split
    else:
        raise ParameterError(f"split must be a Split or a (train, test) pair, not {type(split).__name__}",
                             parameter="split")
    if not isinstance(train, Interactions) or not isinstance(test, Interactions):
        raise ParameterError("split must hold two Interactions (train, test)", parameter="split")
    if train.shape != test.shape or not (
        (train.user_ids is test.user_ids or np.array_equal(train.user_ids, test.user_ids))
        and (train.item_ids is test.item_ids or np.array_equal(train.item_ids, test.item_ids))
    ):
        raise ParameterError(
            "train and test must share their id maps (make them with a splitter from matinee.apps.recs.splits)",
            parameter="split",
        )
    return train, test


def _cutoffs(k: Any) -> list[int]:
    if isinstance(k, (int, np.integer)):
        values = [k]
    elif isinstance(k, (list, tuple, range, np.ndarray)) and np.ndim(k) == 1:
        values = list(k)
    else:
        values = []
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0 for v in values):
        raise ParameterError(f"k must be a positive whole number or a list of them, not {k!r}", parameter="k")
    return list(dict.fromkeys(int(v) for v in values))


def _metric_names(metrics: Any) -> list[str]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ParameterError(
            f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}" if unknown
            else "metrics is empty; choose from " + ", ".join(METRICS),
            parameter="metrics",
        )
    return list(dict.fromkeys(names))


def _check_model(model: Any, train: Interactions) -> None:
    if not isinstance(model, RecommenderBase):
        raise ParameterError(f"model must be a RecommenderBase, not {type(model).__name__}", parameter="model")
    model._check_fitted()
    seen = model.seen_
    if seen.shape != train.shape or seen.nnz != train.matrix.nnz:
        raise ParameterError(
            f"{type(model).__name__} was fitted on other data than split.train "
            f"({seen.shape[0]} x {seen.shape[1]}, {seen.nnz} pairs vs {train.shape[0]} x {train.shape[1]}, "
            f"{train.matrix.nnz}); fit it on the training part",
            parameter="model",
        )


def _relevant(train: Interactions, test: Interactions) -> Any:
    """Test pairs with positive weight, minus the pairs already seen in training."""
    positive = (test.matrix > 0).astype(np.int8)
    seen = (train.matrix > 0).astype(np.int8)
    relevant = (positive - positive.multiply(seen)).tocsr()
    relevant.eliminate_zeros()
    return relevant


def _test_users(train: Interactions, relevant: Any, users: Any) -> np.ndarray:
    counts = np.diff(relevant.indptr)
    if users is None:
        rows = np.flatnonzero(counts)
    else:
        asked = np.unique(train.user_index(np.asarray(users)))
        rows = asked[counts[asked] > 0]
    if not len(rows):
        raise ParameterError("no user to evaluate: none has a test interaction on an item unseen in training",
                             parameter="users" if users is not None else "split")
    return rows.astype(np.int64)


def _log(table: pd.DataFrame, prefix: str | None) -> None:
    if current.is_running_flow and prefix is not None:
        current.log_metrics({f"{prefix}{r.metric}@{r.k}": float(r.value) for r in table.itertuples()
                             if not math.isnan(r.value)})
