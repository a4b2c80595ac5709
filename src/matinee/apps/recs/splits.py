"""Splitting an interaction log into training and test parts without leakage.

Every splitter returns a :class:`Split` whose ``train`` and ``test`` are
:class:`~matinee.apps.recs.interactions.Interactions` over the *same* id maps
as the input, so an internal user or item index means the same thing in both.
Every interaction of the input lands in exactly one of the two parts.

=============================  ================================================
:func:`temporal_split`         one global cut in time: test is everything after it
:func:`user_temporal_split`    each user's latest interactions (a fraction or a
                               count) are test
:func:`leave_one_out`          each user's latest interaction is test
:func:`random_split`           a seeded random share of the (user, item) pairs
                               is test
=============================  ================================================

"Latest" orders a user's interactions by timestamp, ties broken by item
index (the position in ``item_ids``, which follows the external id order), so
the temporal splitters are deterministic and every test interaction of a user
comes after each of that user's training interactions in that order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from matinee.apps.recs.interactions import Interactions
from matinee.errors import ParameterError

__all__ = ["Split", "leave_one_out", "random_split", "temporal_split", "user_temporal_split"]


@dataclass(frozen=True)
class Split:
    """A training and a test part of one log, over the same id maps.

    Unpacks as a pair: ``train, test = split``.

    Examples
    --------
    >>> import pandas as pd
    >>> from matinee.apps.recs import Interactions
    >>> data = Interactions.from_frame(pd.DataFrame(
    ...     {"user_id": [1, 1, 2, 2], "item_id": [5, 6, 5, 7], "timestamp": [1, 2, 3, 4]}))
    >>> train, test = leave_one_out(data)
    >>> len(train), len(test), test.n_items == data.n_items
    (2, 2, True)
    """

    train: Interactions
    test: Interactions

    def __iter__(self) -> Iterator[Interactions]:
        return iter((self.train, self.test))

    def __repr__(self) -> str:
        return f"Split(train={self.train!r}, test={self.test!r})"


def temporal_split(data: Interactions, test_fraction: float) -> Split:
    """Split at one point in time: train on the past, test on the future.

    The interactions are ordered by timestamp and the cut time is the
    timestamp of the last interaction within the first ``1 - test_fraction``
    of them. Test holds the interactions strictly later than the cut, so
    interactions sharing the cut's timestamp all stay in training and the test
    share can come out a little below ``test_fraction`` when timestamps tie.
    Users and items are not filtered: a user first seen after the cut is in
    test only.

    Parameters
    ----------
    data
        The log; it needs timestamps.
    test_fraction
        Share of the interactions to put after the cut, strictly between 0 and 1.

    Returns
    -------
    Split

    Raises
    ------
    ParameterError
        ``data`` without timestamps, a ``test_fraction`` outside (0, 1), or a
        cut that would leave either part empty (e.g. all timestamps equal).

    Examples
    --------
    >>> import pandas as pd
    >>> from matinee.apps.recs import Interactions
    >>> data = Interactions.from_frame(pd.DataFrame(
    ...     {"user_id": [1, 1, 2, 2, 3], "item_id": [5, 6, 5, 7, 6], "timestamp": [1, 2, 3, 4, 5]}))
    >>> split = temporal_split(data, test_fraction=0.4)
    >>> split.train.timestamps.tolist(), split.test.timestamps.tolist()
    ([1.0, 2.0, 3.0], [4.0, 5.0])
    """
    times = _timestamps(data, "temporal_split")
    _check_fraction(test_fraction)
    n = len(times)
    n_train = n - _share(test_fraction, n)
    if n_train < 1:
        raise ParameterError(f"test_fraction={test_fraction} leaves nothing to train on", parameter="test_fraction")
    cut = np.partition(times, n_train - 1)[n_train - 1]
    test = times > cut
    if not test.any():
        raise ParameterError(
            f"no interaction is later than the cut at {cut:g} (timestamps tie); raise test_fraction",
            parameter="test_fraction",
        )
    return Split(data.subset(~test), data.subset(test))


def user_temporal_split(
    data: Interactions,
    test_fraction: float | None = None,
    n_test: int | None = None,
    *,
    min_interactions: int = 2,
) -> Split:
    """Hold out each user's latest interactions.

    Each user's interactions are ordered by timestamp, ties broken by item
    index. For a user with ``n`` interactions:

    * ``n < min_interactions``: all ``n`` stay in training, none in test;
    * otherwise the last ``t`` go to test, where ``t`` is ``n_test`` or
      ``ceil(test_fraction * n)`` (the first ``floor((1 - test_fraction) * n)``
      train), capped at ``n - 1`` so every user keeps at least one training
      interaction.

    The usual protocol "each user's last 20%, users with fewer than 5
    skipped" is ``user_temporal_split(data, test_fraction=0.2, min_interactions=5)``.

    Repeated records of one event (same user, item and timestamp) are never
    separated: if the cut falls between them, they all stay in training.

    Parameters
    ----------
    data
        The log; it needs timestamps.
    test_fraction
        Share of each user's interactions to hold out, strictly between 0 and 1.
    n_test
        Number of each user's interactions to hold out. Give exactly one of
        ``test_fraction`` and ``n_test``.
    min_interactions
        Users with fewer interactions than this are kept whole in training.

    Returns
    -------
    Split

    Raises
    ------
    ParameterError
        ``data`` without timestamps, neither or both of ``test_fraction`` and
        ``n_test``, values out of range, or no user left with a test interaction.

    Examples
    --------
    >>> import pandas as pd
    >>> from matinee.apps.recs import Interactions
    >>> data = Interactions.from_frame(pd.DataFrame(
    ...     {"user_id": ["a"] * 5 + ["b"] * 2, "item_id": [1, 2, 3, 4, 5, 1, 2],
    ...      "timestamp": [5, 4, 3, 2, 1, 1, 2]}))
    >>> train, test = user_temporal_split(data, test_fraction=0.4, min_interactions=3)
    >>> test.to_frame()[["user_id", "item_id"]].values.tolist()
    [['a', 1], ['a', 2]]
    """
    times = _timestamps(data, "user_temporal_split")
    if (test_fraction is None) == (n_test is None):
        raise ParameterError("give exactly one of test_fraction= and n_test=", parameter="test_fraction")
    if test_fraction is not None:
        _check_fraction(test_fraction)
    else:
        _check_count(n_test, "n_test")
    _check_count(min_interactions, "min_interactions")

    order = np.lexsort((data.items, times, data.users))
    users, items, times = data.users[order], data.items[order], times[order]
    counts = np.bincount(data.users, minlength=data.n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    if test_fraction is not None:
        held = np.ceil(test_fraction * counts - 1e-9).astype(np.int64)
    else:
        held = np.full(data.n_users, n_test, dtype=np.int64)
    held = np.where(counts < min_interactions, 0, np.minimum(held, np.maximum(counts - 1, 0)))
    position = np.arange(len(order)) - starts[users]
    test_sorted = position >= counts[users] - held[users]
    # Exact repeats (user, item, timestamp) follow the first of their group.
    repeat = np.zeros(len(order), bool)
    repeat[1:] = (users[1:] == users[:-1]) & (items[1:] == items[:-1]) & (times[1:] == times[:-1])
    group = np.cumsum(~repeat) - 1
    test_sorted = test_sorted[np.flatnonzero(~repeat)][group]
    if not test_sorted.any():
        raise ParameterError(
            f"no user has enough interactions to hold one out (min_interactions={min_interactions}, "
            f"test_fraction={test_fraction}, n_test={n_test})",
            parameter="min_interactions",
        )
    test = np.empty(len(order), bool)
    test[order] = test_sorted
    return Split(data.subset(~test), data.subset(test))


def leave_one_out(data: Interactions, *, min_interactions: int = 2) -> Split:
    """Hold out each user's latest interaction (by timestamp, ties by item index).

    The same as ``user_temporal_split(data, n_test=1, min_interactions=...)``:
    users with fewer than ``min_interactions`` interactions stay whole in
    training.

    Parameters
    ----------
    data
        The log; it needs timestamps.
    min_interactions
        Users with fewer interactions than this have no test interaction.

    Returns
    -------
    Split

    Raises
    ------
    ParameterError
        ``data`` without timestamps, ``min_interactions`` not a positive whole
        number, or no user with enough interactions.

    Examples
    --------
    >>> import pandas as pd
    >>> from matinee.apps.recs import Interactions
    >>> data = Interactions.from_frame(pd.DataFrame(
    ...     {"user_id": [1, 1, 1, 2], "item_id": [7, 8, 9, 7], "timestamp": [3, 1, 2, 1]}))
    >>> train, test = leave_one_out(data)
    >>> test.to_frame()[["user_id", "item_id"]].values.tolist()
    [[1, 7]]
    """
    return user_temporal_split(data, n_test=1, min_interactions=min_interactions)


def random_split(data: Interactions, test_fraction: float, random_state: Any = None) -> Split:
    """Hold out a seeded random share of the (user, item) pairs.

    ``round(test_fraction * pairs)`` of the distinct (user, item) pairs are
    drawn without replacement; every interaction of a drawn pair goes to test,
    so a pair repeated in the log (several plays of one title) is never in
    both parts. Timestamps are not needed.

    Parameters
    ----------
    data
        The log.
    test_fraction
        Share of the pairs to hold out, strictly between 0 and 1.
    random_state
        ``None``, an int seed or a :class:`numpy.random.Generator`.

    Returns
    -------
    Split

    Raises
    ------
    ParameterError
        A ``test_fraction`` outside (0, 1), a ``random_state`` of another
        type, or a log too small to leave both parts non-empty.

    Examples
    --------
    >>> import pandas as pd
    >>> from matinee.apps.recs import Interactions
    >>> data = Interactions.from_frame(pd.DataFrame({"user_id": [1, 1, 2, 2, 2],
    ...                                              "item_id": [5, 6, 5, 6, 6]}))
    >>> train, test = random_split(data, test_fraction=0.25, random_state=0)
    >>> len(train) + len(test), test.matrix.multiply(train.matrix).nnz
    (5, 0)
    """
    if not isinstance(data, Interactions) or not len(data):
        raise ParameterError("random_split takes a non-empty Interactions", parameter="data")
    _check_fraction(test_fraction)
    rng = _rng(random_state)
    pairs, pair_of = np.unique(data.users.astype(np.int64) * data.n_items + data.items, return_inverse=True)
    n_test = _share(test_fraction, len(pairs))
    if n_test >= len(pairs):
        raise ParameterError(
            f"test_fraction={test_fraction} of {len(pairs)} (user, item) pairs leaves nothing to train on",
            parameter="test_fraction",
        )
    chosen = np.zeros(len(pairs), bool)
    chosen[rng.choice(len(pairs), size=n_test, replace=False)] = True
    test = chosen[pair_of.ravel()]
    return Split(data.subset(~test), data.subset(test))


# -- checks -------------------------------------------------------------------------
def _timestamps(data: Any, splitter: str) -> np.ndarray:
    if not isinstance(data, Interactions):
        raise ParameterError(f"{splitter} takes Interactions, not {type(data).__name__}", parameter="data")
    if data.timestamps is None:
        raise ParameterError(
            f"{splitter} needs timestamps and this log has none (build it with time_col=)", parameter="data"
        )
    if not len(data):
        raise ParameterError(f"{splitter} was given an empty log", parameter="data")
    return data.timestamps


def _check_fraction(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0 < value < 1:
        raise ParameterError(f"test_fraction must be a number strictly between 0 and 1, not {value!r}",
                             parameter="test_fraction")


def _check_count(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive whole number, not {value!r}", parameter=name)


def _share(fraction: float, n: int) -> int:
    """``round(fraction * n)``, at least 1."""
    return max(1, math.floor(fraction * n + 0.5))


def _rng(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool)):
        return np.random.default_rng(random_state)
    raise ParameterError(
        f"random_state must be None, an int seed or a numpy Generator, not {type(random_state).__name__}",
        parameter="random_state",
    )
