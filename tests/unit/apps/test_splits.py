"""Splitters: every interaction lands in exactly one part, nothing leaks, bad arguments are named."""

from __future__ import annotations

import doctest
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matinee.apps.recs import Interactions
from matinee.apps.recs import splits as module_under_test
from matinee.apps.recs.splits import (
    Split,
    leave_one_out,
    random_split,
    temporal_split,
    user_temporal_split,
)
from matinee.errors import ParameterError

MOVIELENS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ml-latest-small"


def make_log(seed: int = 0, n_users: int = 40, n_items: int = 30, n: int = 900) -> Interactions:
    """A log with coarse timestamps (many ties), repeated plays and users of every size."""
    rng = np.random.default_rng(seed)
    users = rng.zipf(1.6, size=n) % n_users
    frame = pd.DataFrame({
        "user_id": [f"u{u:02d}" for u in users],
        "item_id": rng.integers(0, n_items, size=n) * 10,
        "timestamp": rng.integers(0, 60, size=n),
        "weight": rng.integers(1, 4, size=n).astype(float),
    })
    return Interactions.from_frame(frame, weight_col="weight")


def rows(data: Interactions) -> Counter:
    """The log as a multiset of (user, item, timestamp, weight) rows."""
    return Counter(zip(data.users.tolist(), data.items.tolist(), data.timestamps.tolist(),
                       data.weights.tolist(), strict=True))


SPLITTERS = {
    "temporal": lambda d: temporal_split(d, test_fraction=0.25),
    "user_temporal_fraction": lambda d: user_temporal_split(d, test_fraction=0.3),
    "user_temporal_count": lambda d: user_temporal_split(d, n_test=2, min_interactions=3),
    "leave_one_out": lambda d: leave_one_out(d),
    "random": lambda d: random_split(d, test_fraction=0.2, random_state=7),
}
TEMPORAL = ["temporal", "user_temporal_fraction", "user_temporal_count", "leave_one_out"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(SPLITTERS))
def test_every_interaction_lands_in_exactly_one_part(name, seed):
    data = make_log(seed)
    split = SPLITTERS[name](data)
    assert isinstance(split, Split)
    train, test = split
    assert len(train) and len(test)
    assert rows(train) + rows(test) == rows(data)
    for part in (train, test):
        assert part.user_ids is data.user_ids and part.item_ids is data.item_ids
        assert part.shape == data.shape


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(SPLITTERS))
def test_no_test_interaction_leaks_into_training(name, seed):
    data = make_log(seed)
    train, test = SPLITTERS[name](data)
    train_events = {(u, i, t) for u, i, t, _ in rows(train)}
    test_events = {(u, i, t) for u, i, t, _ in rows(test)}
    assert not train_events & test_events
    if name == "random":  # no (user, item) pair on both sides, however often it repeats
        assert train.matrix.multiply(test.matrix).nnz == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", TEMPORAL)
def test_temporal_splits_test_every_user_only_on_their_future(name, seed):
    data = make_log(seed)
    train, test = SPLITTERS[name](data)
    if name == "temporal":
        assert train.timestamps.max() < test.timestamps.min()
    # by (timestamp, item index): every test interaction of a user comes after all of their training ones
    last_train = {}
    for u, i, t in zip(train.users.tolist(), train.items.tolist(), train.timestamps.tolist(), strict=True):
        last_train[u] = max(last_train.get(u, (-math.inf, -1)), (t, i))
    for u, i, t in zip(test.users.tolist(), test.items.tolist(), test.timestamps.tolist(), strict=True):
        assert (t, i) > last_train.get(u, (-math.inf, -1)), (u, i, t)


def test_temporal_split_cuts_once_in_time():
    data = make_log(0)
    train, test = temporal_split(data, test_fraction=0.25)
    assert len(test) <= round(0.25 * len(data))  # ties at the cut stay in training
    assert len(test) >= round(0.25 * len(data)) - np.count_nonzero(data.timestamps == train.timestamps.max())
    untied = Interactions.from_frame(pd.DataFrame({"user_id": [1] * 10, "item_id": range(10),
                                                   "timestamp": range(10)}))
    assert temporal_split(untied, 0.3).test.timestamps.tolist() == [7.0, 8.0, 9.0]


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
@pytest.mark.parametrize("min_interactions", [1, 2, 5])
def test_user_temporal_split_holds_out_ceil_of_the_fraction(fraction, min_interactions):
    data = make_log(3)
    train, test = user_temporal_split(data, test_fraction=fraction, min_interactions=min_interactions)
    n = np.bincount(data.users, minlength=data.n_users)
    held = np.bincount(test.users, minlength=data.n_users)
    expected = np.where(n < min_interactions, 0, np.minimum(np.ceil(fraction * n - 1e-9), n - 1))
    # repeated records of one event stay together, so a few users may hold out fewer
    dup = data.to_frame().duplicated(["user_id", "item_id", "timestamp"], keep=False)
    users_with_dups = set(data.users[dup.to_numpy()].tolist())
    for u in range(data.n_users):
        if u in users_with_dups:
            assert held[u] <= expected[u]
        else:
            assert held[u] == expected[u], u
    assert (np.bincount(train.users, minlength=data.n_users) >= np.minimum(n, 1)).all()


def test_user_temporal_split_n_test_and_its_cap():
    frame = pd.DataFrame({"user_id": ["a"] * 6 + ["b"] * 3 + ["c"], "item_id": list(range(6)) + [0, 1, 2] + [4],
                          "timestamp": [6, 5, 4, 3, 2, 1, 1, 2, 3, 1]})
    data = Interactions.from_frame(frame)
    train, test = user_temporal_split(data, n_test=3, min_interactions=1)
    held = test.to_frame().groupby("user_id")["item_id"].apply(sorted).to_dict()
    assert held == {"a": [0, 1, 2], "b": [1, 2]}  # b keeps one for training, c keeps its only one
    assert sorted(train.to_frame()["user_id"]) == ["a", "a", "a", "b", "c"]


def test_ties_in_time_are_broken_by_item_index():
    frame = pd.DataFrame({"user_id": [1] * 4, "item_id": [30, 10, 40, 20], "timestamp": [5, 5, 5, 1]})
    train, test = user_temporal_split(Interactions.from_frame(frame), n_test=2)
    assert sorted(test.to_frame()["item_id"]) == [30, 40]
    assert leave_one_out(Interactions.from_frame(frame)).test.to_frame()["item_id"].tolist() == [40]


def test_repeated_records_of_one_event_are_not_separated():
    frame = pd.DataFrame({"user_id": [1] * 4, "item_id": [1, 2, 2, 3], "timestamp": [1, 2, 2, 3]})
    data = Interactions.from_frame(frame)
    held = {n: sorted(user_temporal_split(data, n_test=n).test.to_frame()["item_id"]) for n in (1, 2, 3)}
    # with n_test=2 the cut falls between the two records of item 2: both stay in training
    assert held == {1: [3], 2: [3], 3: [2, 2, 3]}


def test_leave_one_out_holds_out_one_per_user():
    data = make_log(4)
    train, test = leave_one_out(data, min_interactions=3)
    n = np.bincount(data.users, minlength=data.n_users)
    held = np.bincount(test.users, minlength=data.n_users)
    assert set(held[n >= 3].tolist()) <= {1} and (held[n < 3] == 0).all()


def test_random_split_is_seeded_and_holds_out_the_fraction_of_pairs():
    data = make_log(5)
    a = random_split(data, 0.2, random_state=11)
    b = random_split(data, 0.2, random_state=11)
    c = random_split(data, 0.2, random_state=np.random.default_rng(12))
    assert rows(a.test) == rows(b.test) and rows(a.test) != rows(c.test)
    pairs = data.matrix.nnz
    assert a.test.matrix.nnz == round(0.2 * pairs)
    untimed = Interactions.from_frame(pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 3]}),
                                      time_col=None)
    assert len(random_split(untimed, 0.5, random_state=0).test) == 2


def timeless() -> Interactions:
    return Interactions.from_frame(pd.DataFrame({"user_id": [1, 2], "item_id": [1, 2]}), time_col=None)


def flat() -> Interactions:
    return Interactions.from_frame(pd.DataFrame({"user_id": [1, 2, 1], "item_id": [1, 2, 3], "timestamp": 7}))


BAD = [
    (lambda: temporal_split(make_log(), 0.0), "strictly between 0 and 1", "test_fraction"),
    (lambda: temporal_split(make_log(), 1), "strictly between 0 and 1", "test_fraction"),
    (lambda: temporal_split(make_log(), "0.2"), "strictly between 0 and 1", "test_fraction"),
    (lambda: temporal_split(make_log(), True), "strictly between 0 and 1", "test_fraction"),
    (lambda: temporal_split(timeless(), 0.2), "needs timestamps", "data"),
    (lambda: temporal_split(flat(), 0.5), "timestamps tie", "test_fraction"),
    (lambda: temporal_split(make_log().to_frame(), 0.2), "takes Interactions, not DataFrame", "data"),
    (lambda: user_temporal_split(make_log()), "exactly one of", "test_fraction"),
    (lambda: user_temporal_split(make_log(), 0.2, n_test=1), "exactly one of", "test_fraction"),
    (lambda: user_temporal_split(make_log(), n_test=0), "n_test must be a positive", "n_test"),
    (lambda: user_temporal_split(make_log(), n_test=1.5), "n_test must be a positive", "n_test"),
    (lambda: user_temporal_split(make_log(), test_fraction=1.5), "strictly between", "test_fraction"),
    (lambda: user_temporal_split(make_log(), n_test=1, min_interactions=0), "min_interactions must be",
     "min_interactions"),
    (lambda: user_temporal_split(make_log(), n_test=1, min_interactions=10_000), "no user has enough",
     "min_interactions"),
    (lambda: user_temporal_split(timeless(), n_test=1), "needs timestamps", "data"),
    (lambda: leave_one_out(timeless()), "needs timestamps", "data"),
    (lambda: leave_one_out(make_log(), min_interactions=-1), "min_interactions must be", "min_interactions"),
    (lambda: random_split(make_log(), 0, random_state=0), "strictly between", "test_fraction"),
    (lambda: random_split(make_log(), 0.2, random_state="seed"), "random_state must be", "random_state"),
    (lambda: random_split(make_log(), 0.2, random_state=1.5), "random_state must be", "random_state"),
    (lambda: random_split(timeless(), 0.9, random_state=0), "leaves nothing to train on", "test_fraction"),
    (lambda: random_split([1, 2], 0.2), "non-empty Interactions", "data"),
]


@pytest.mark.parametrize(("call", "message", "parameter"), BAD)
def test_bad_arguments_are_named(call, message, parameter):
    with pytest.raises(ParameterError, match=message) as info:
        call()
    assert info.value.parameter == parameter


@pytest.mark.skipif(not MOVIELENS.is_dir(), reason=f"MovieLens data not found at {MOVIELENS}")
def test_movielens_protocol_keeps_603_users():
    """Ratings >= 4 as positives, each user's last 20% as test, users with < 5 positives skipped."""
    ratings = pd.read_csv(MOVIELENS / "ratings.csv")
    data = Interactions.from_frame(ratings, user_col="userId", item_col="movieId",
                                   rating_col="rating", min_rating=4.0)
    train, test = user_temporal_split(data, test_fraction=0.2, min_interactions=5)
    assert len(np.unique(test.users)) == 603
    assert rows(train) + rows(test) == rows(data)
    per_user = np.bincount(data.users, minlength=data.n_users)
    held = np.bincount(test.users, minlength=data.n_users)
    eligible = per_user >= 5
    assert (held[eligible] == np.ceil(0.2 * per_user[eligible] - 1e-9)).all() and (held[~eligible] == 0).all()


def test_docstring_examples_run():
    result = doctest.testmod(module_under_test, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
