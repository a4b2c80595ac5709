"""``check_recommender``: the checks every :class:`~matinee.apps.recs.base.RecommenderBase` passes.

Each check takes ``make_model``, a callable returning a new, unfitted model
(a class with workable defaults, or e.g. ``lambda: ALS(factors=8)``), builds
its own small seeded data, and raises ``AssertionError`` naming the model and
what is wrong. Run them all with :func:`check_recommender`, or one test per
check under pytest::

    import pytest
    from matinee.testing import recommender_checks

    @pytest.mark.parametrize("check", recommender_checks(), ids=lambda c: c.__name__)
    def test_my_model(check):
        check(MyModel)

What is checked: ``__init__`` stores only hyperparameters; ``get_params`` /
``set_params`` round-trip and unknown names are refused; bad hyperparameters
raise a ``ParameterError`` naming them at ``fit`` and leave the model as it
was; ``fit`` returns ``self``,
sets ``name_`` attributes, leaves its input untouched, is deterministic for a
fixed ``random_state`` and forgets earlier fits; lists have the right shape,
descending scores, no seen items when ``exclude_seen``, only the candidates
asked for; unknown users (and users without training interactions) get the
popularity ranking, flagged, or a ``NotFoundError`` with ``unknown="error"``;
bad ``k`` and empty candidate sets raise ``ParameterError``; an unfitted model
raises ``NotFittedError``; ``similar_items`` (when the model has it) leaves the
item itself out; a pickled model recommends the same; a batch recommends what
one-by-one calls do; string and integer ids both work.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from matinee.apps.recs.base import NotFittedError, Recommendations, RecommenderBase
from matinee.apps.recs.interactions import Interactions
from matinee.errors import NotFoundError, NotSupportedError, ParameterError

ModelFactory = Callable[[], RecommenderBase]
Check = Callable[[ModelFactory], None]

#: Relative tolerance when two score computations may round differently (batch vs. single rows).
SCORE_RTOL = 1e-5


def check_recommender(make_model: ModelFactory) -> None:
    """Run every conformance check on the model ``make_model()`` builds.

    Parameters
    ----------
    make_model
        Returns a new, unfitted model each call.

    Raises
    ------
    AssertionError
        The first check that fails, naming the model and the broken rule.

    Examples
    --------
    >>> from matinee.apps.recs.models import ItemKNN
    >>> check_recommender(lambda: ItemKNN(neighbors=5))
    """
    for check in recommender_checks():
        check(make_model)


def recommender_checks() -> list[Check]:
    """Every check, in order, each a function of ``make_model`` (for ``pytest.mark.parametrize``)."""
    return list(_CHECKS)


def sample_interactions(*, string_users: bool = True, seed: int = 0) -> Interactions:
    """A small seeded log: 30 users in three taste groups, 24 items, 8 interactions each.

    Each user takes six items from their group's eight and two from the rest,
    with weights 1 to 3 and increasing timestamps. With ``string_users`` the
    user ids are ``"u00"``... and item ids the integers ``1000``...; otherwise
    users are integers ``100``... and items strings ``"i00"``....
    """
    rng = np.random.default_rng(seed)
    n_users, n_items, groups = 30, 24, 3
    size = n_items // groups
    rows = []
    for user in range(n_users):
        own = np.arange(size) + size * (user % groups)
        other = np.setdiff1d(np.arange(n_items), own)
        items = np.concatenate([rng.choice(own, 6, replace=False), rng.choice(other, 2, replace=False)])
        rows += [(user, int(item)) for item in items]
    users, items = np.array(rows).T
    if len(np.unique(items)) != n_items:  # pragma: no cover - holds for every seed tried
        raise AssertionError("sample_interactions: an item got no interaction; choose another seed")
    frame = pd.DataFrame({
        "user_id": [f"u{u:02d}" for u in users] if string_users else users + 100,
        "item_id": items + 1000 if string_users else [f"i{i:02d}" for i in items],
        "timestamp": np.arange(len(users), dtype=np.int64),
        "weight": rng.integers(1, 4, len(users)).astype(float),
    })
    return Interactions.from_frame(frame, weight_col="weight")


# -- helpers ----------------------------------------------------------------------------------------


def _name(model: Any) -> str:
    return type(model).__name__


def _require(condition: Any, model: Any, message: str) -> None:
    if not condition:
        raise AssertionError(f"{_name(model)}: {message}")


def _raises(error: type[Exception], model: Any, what: str, call: Callable[[], Any],
            parameter: str | None = None) -> None:
    try:
        call()
    except error as exc:
        if parameter is not None:
            _require(getattr(exc, "parameter", None) == parameter, model,
                     f"{what} raised {type(exc).__name__} naming {getattr(exc, 'parameter', None)!r}, "
                     f"not {parameter!r}")
        return
    except Exception as exc:
        raise AssertionError(f"{_name(model)}: {what} raised {type(exc).__name__} ({exc}), "
                             f"not {error.__name__}") from exc
    raise AssertionError(f"{_name(model)}: {what} did not raise {error.__name__}")


def _seeded(make_model: ModelFactory) -> RecommenderBase:
    """A new model, with ``random_state=0`` when it takes one and none was given."""
    model = make_model()
    if model.get_params().get("random_state", 0) is None:
        model.set_params(random_state=0)
    return model


def _fitted(make_model: ModelFactory, data: Interactions | None = None) -> RecommenderBase:
    model = _seeded(make_model)
    model.fit(sample_interactions() if data is None else data)
    return model


def _has_similar(model: RecommenderBase) -> bool:
    return type(model)._similar is not RecommenderBase._similar


def _seen(data: Interactions, user: int) -> set[Hashable]:
    row = data.matrix[user]
    return set(data.item_ids[row.indices].tolist())


def _popular_order(data: Interactions) -> np.ndarray:
    counts = np.asarray((data.matrix > 0).sum(axis=0)).ravel()
    return np.lexsort((np.arange(data.n_items), -counts))


def _same_lists(model: Any, what: str, a: Recommendations, b: Recommendations, exact: bool = False) -> None:
    """Equal lists; unless ``exact``, scores may differ by rounding and near-ties may swap places."""
    _require(a.items.shape == b.items.shape, model, f"{what}: shapes {a.items.shape} and {b.items.shape}")
    if exact:
        _require(np.array_equal(a.scores, b.scores) and (a.items == b.items).all(), model,
                 f"{what}: the lists differ")
        return
    close = np.isclose(a.scores, b.scores, rtol=SCORE_RTOL, atol=1e-6) | (a.scores == b.scores)
    _require(close.all(), model, f"{what}: scores differ beyond rounding")
    for row in range(len(a.items)):
        for pos in np.flatnonzero(a.items[row] != b.items[row]):
            where = np.flatnonzero(b.items[row] == a.items[row][pos])
            tie = len(where) and np.isclose(b.scores[row][where[0]], a.scores[row][pos], rtol=SCORE_RTOL,
                                            atol=1e-6)
            _require(tie, model, f"{what}: row {row} differs at rank {pos + 1} beyond a tie")


# -- the checks -------------------------------------------------------------------------------------


def check_init_stores_only_hyperparameters(make_model: ModelFactory) -> None:
    """``__init__`` stores its keyword arguments as attributes of the same name, and nothing else."""
    model = make_model()
    names = set(model.get_params())
    stored = set(vars(model))
    _require(stored == names, model, f"__init__ stored {sorted(stored)}, its parameters are {sorted(names)}")
    _require(not model.is_fitted, model, "a new model says it is fitted")
    strange = {name: object() for name in names}
    try:
        type(model)(**strange)
    except Exception as exc:
        raise AssertionError(f"{_name(model)}: __init__ validated its arguments ({exc}); "
                             "leave validation to fit") from exc


def check_params_round_trip(make_model: ModelFactory) -> None:
    """``get_params`` rebuilds an equal model; ``set_params`` returns self; unknown names are refused."""
    model = make_model()
    params = model.get_params()
    clone = type(model)(**params)
    _require(clone.get_params() == params, model, "get_params() does not rebuild the same model")
    _require(model.set_params(**params) is model, model, "set_params() does not return the model")
    _require(repr(model).startswith(_name(model) + "("), model, f"unexpected repr {model!r}")
    _raises(ParameterError, model, "set_params(no_such_parameter=1)",
            lambda: model.set_params(no_such_parameter=1), parameter="no_such_parameter")


def check_bad_hyperparameters_named_at_fit(make_model: ModelFactory) -> None:
    """A hyperparameter of the wrong kind makes ``fit`` raise a ``ParameterError`` naming it, changing nothing."""
    data = sample_interactions()
    other = sample_interactions(string_users=False, seed=1)
    for name in make_model().get_params():
        model = make_model().set_params(**{name: object()})
        _raises(ParameterError, model, f"fit with {name}=object()", partial(model.fit, data), parameter=name)
        _require(not model.is_fitted, model, f"a failed fit (bad {name}) left the model looking fitted")
        fitted = _fitted(make_model, data)
        before = fitted.recommend(data.user_ids, k=5)
        fitted.set_params(**{name: object()})
        _raises(ParameterError, fitted, f"refit with {name}=object()", partial(fitted.fit, other), parameter=name)
        _same_lists(fitted, "recommendations after a failed refit", before, fitted.recommend(data.user_ids, k=5),
                    exact=True)


def check_not_fitted(make_model: ModelFactory) -> None:
    """Recommending before ``fit`` raises ``NotFittedError``."""
    model = make_model()
    _raises(NotFittedError, model, "recommend before fit", lambda: model.recommend(["u00"], k=3))
    _raises(NotFittedError, model, "recommend_index before fit", lambda: model.recommend_index(np.array([0]), 3))
    _raises(NotFittedError, model, "similar_items before fit", lambda: model.similar_items([1000], k=3))


def check_fit_returns_self_and_learns(make_model: ModelFactory) -> None:
    """``fit`` returns ``self``, sets ``name_`` attributes, leaves hyperparameters alone, refuses non-data."""
    model = _seeded(make_model)
    params = model.get_params()
    before = {name for name in vars(model) if name.endswith("_")}
    _require(not before, model, f"has learned attributes before fit: {sorted(before)}")
    _require(model.fit(sample_interactions()) is model, model, "fit does not return self")
    learned = {name for name in vars(model) if name.endswith("_") and not name.startswith("__")}
    _require(learned, model, "fit set no name_ attributes")
    _require(model.is_fitted, model, "is_fitted is False after fit")
    _require(model.get_params() == params, model, "fit changed the hyperparameters")
    not_data: tuple[Any, ...] = (pd.DataFrame({"user_id": [1], "item_id": [2]}), None)
    for bad in not_data:
        _raises(ParameterError, model, f"fit({type(bad).__name__})", partial(model.fit, bad),
                parameter="interactions")


def check_fit_does_not_mutate_input(make_model: ModelFactory) -> None:
    """``fit`` leaves the interactions (log and matrix) as they were."""
    data = sample_interactions()
    matrix = data.matrix
    assert data.timestamps is not None
    snapshot = [a.copy() for a in (data.users, data.items, data.weights, data.timestamps,
                                   matrix.data, matrix.indices, matrix.indptr)]
    model = _fitted(make_model, data)
    after = [data.users, data.items, data.weights, data.timestamps, matrix.data, matrix.indices, matrix.indptr]
    for old, new in zip(snapshot, after, strict=True):
        _require(np.array_equal(old, new), model, "fit changed its input")
    _require(data.matrix is matrix, model, "fit replaced the input's matrix")


def check_deterministic(make_model: ModelFactory) -> None:
    """Two fits with the same ``random_state`` give identical recommendations."""
    data = sample_interactions()
    first, second = _fitted(make_model, data), _fitted(make_model, data)
    users = data.user_ids
    _same_lists(first, "two fits with one random_state", first.recommend(users, k=5), second.recommend(users, k=5),
                exact=True)


def check_refit_forgets(make_model: ModelFactory) -> None:
    """Fitting again on other data gives what a fresh model fitted on that data gives."""
    other = sample_interactions(string_users=False, seed=1)
    refit = _fitted(make_model)
    refit.fit(other)
    fresh = _fitted(make_model, other)
    _require(list(refit.item_ids_) == list(other.item_ids), refit, "refit kept the old item ids")
    _same_lists(refit, "refit vs fresh fit", refit.recommend(other.user_ids, k=5),
                fresh.recommend(other.user_ids, k=5))


def check_recommend_shape_and_order(make_model: ModelFactory) -> None:
    """``(n_users, k)`` lists of known item ids, no repeats, scores descending, keys echoed."""
    data = sample_interactions()
    model = _fitted(make_model, data)
    recs = model.recommend(data.user_ids, k=5)
    _require(len(recs) == data.n_users and recs.items.shape == (data.n_users, 5) == recs.scores.shape,
             model, f"shape {recs.items.shape} for {data.n_users} users and k=5")
    _require(list(recs.keys) == list(data.user_ids), model, "keys are not the users asked for")
    _require(not recs.fallback.any(), model, "known users were flagged as fallback")
    _require(np.isfinite(recs.scores).all(), model, "non-finite scores with enough candidates")
    _require(recs.scores.dtype == np.float32, model, f"scores are {recs.scores.dtype}, not float32")
    _require((np.diff(recs.scores, axis=1) <= 0).all(), model, "scores are not in descending order")
    known = set(data.item_ids.tolist())
    for row in recs.items:
        _require(set(row) <= known and len(set(row)) == len(row), model, f"unknown or repeated items {row}")
    _require(len(recs.to_frame()) == data.n_users * 5, model, "to_frame() lost rows")
    everything = model.recommend(data.user_ids[:3], k=data.n_items + 5, exclude_seen=False)
    _require(everything.items.shape == (3, data.n_items), model,
             f"k > n_items gave shape {everything.items.shape}, not (3, {data.n_items})")
    for row in everything.items:
        _require(sorted(row) == sorted(known), model, "exclude_seen=False does not rank every item once")
    empty = model.recommend(data.user_ids[:0], k=3)
    _require(empty.items.shape == (0, 3), model, f"no users gave shape {empty.items.shape}")


def check_exclude_seen(make_model: ModelFactory) -> None:
    """With ``exclude_seen`` the full list is exactly the items each user has not interacted with."""
    data = sample_interactions()
    model = _fitted(make_model, data)
    recs = model.recommend(data.user_ids, k=data.n_items)
    every = set(data.item_ids.tolist())
    for user, (items, scores) in enumerate(zip(recs.items, recs.scores, strict=True)):
        listed = set(items[np.isfinite(scores)].tolist())
        _require(listed == every - _seen(data, user), model, f"user {data.user_ids[user]!r}: the list is not "
                 "exactly the unseen items")
        _require(all(i is None for i in items[~np.isfinite(scores)]), model, "padding is not None")


def check_candidates(make_model: ModelFactory) -> None:
    """Only candidates are ranked, in the model's order; unknown candidate ids are ignored; lists are padded."""
    data = sample_interactions()
    model = _fitted(make_model, data)
    candidates = list(data.item_ids[::3]) + [-1]
    full = model.recommend(data.user_ids, k=data.n_items)
    recs = model.recommend(data.user_ids, k=len(candidates) + 2, candidates=candidates)
    allowed = set(candidates)
    for user in range(data.n_users):
        unseen = [i for i in data.item_ids[::3].tolist() if i not in _seen(data, user)]
        finite = np.isfinite(recs.scores[user])
        _require(finite.sum() == len(unseen), model, f"user {user}: {finite.sum()} ranked, {len(unseen)} unseen "
                 "candidates")
        _require(set(recs.items[user][finite].tolist()) <= allowed, model, "a non-candidate was recommended")
        keep = np.array([item in allowed for item in full.items[user].tolist()])
        expected = Recommendations(full.keys[user:user + 1], full.items[user][keep][None, :len(unseen)],
                                   full.scores[user][keep][None, :len(unseen)], np.zeros(1, bool))
        got = Recommendations(recs.keys[user:user + 1], recs.items[user][finite][None],
                              recs.scores[user][finite][None], np.zeros(1, bool))
        _same_lists(model, "candidate ranking vs. filtered full ranking", got, expected)


def check_empty_candidates(make_model: ModelFactory) -> None:
    """An empty candidate set, or one with no known item, raises ``ParameterError``."""
    model = _fitted(make_model)
    for candidates in ([], [-1, -2]):
        _raises(ParameterError, model, f"candidates={candidates}",
                partial(model.recommend, ["u00"], k=3, candidates=candidates), parameter="candidates")


def check_unknown_users(make_model: ModelFactory) -> None:
    """Unknown users get the most popular items, flagged; ``unknown="error"`` raises ``NotFoundError``."""
    data = sample_interactions()
    model = _fitted(make_model, data)
    recs = model.recommend(["nobody", data.user_ids[0]], k=5)
    _require(list(recs.fallback) == [True, False], model, f"fallback flags {list(recs.fallback)}")
    top = data.item_ids[_popular_order(data)[:5]].tolist()
    _require(recs.items[0].tolist() == top, model, f"unknown user got {recs.items[0].tolist()}, not {top}")
    _raises(NotFoundError, model, 'unknown="error" with an unknown user',
            lambda: model.recommend(["nobody"], k=5, unknown="error"), parameter="users")
    _raises(ParameterError, model, 'unknown="sometimes"',
            lambda: model.recommend(["u00"], k=5, unknown="sometimes"), parameter="unknown")


def check_users_without_history(make_model: ModelFactory) -> None:
    """A user in the id map with no training interaction is treated as unknown."""
    data = sample_interactions()
    train = data.subset(data.users != 0)
    model = _fitted(make_model, train)
    recs = model.recommend([data.user_ids[0], data.user_ids[1]], k=5)
    _require(list(recs.fallback) == [True, False], model, "a user without history was not a fallback")
    top = train.item_ids[_popular_order(train)[:5]].tolist()
    _require(recs.items[0].tolist() == top, model, "a user without history did not get the popular items")
    _raises(NotFoundError, model, 'unknown="error" for a user without history',
            lambda: model.recommend([data.user_ids[0]], k=5, unknown="error"), parameter="users")


def check_bad_k(make_model: ModelFactory) -> None:
    """``k`` must be a positive whole number, for ``recommend`` and ``similar_items``."""
    model = _fitted(make_model)
    bad_ks: tuple[Any, ...] = (0, -1, 2.5, "3", True, None)
    for k in bad_ks:
        _raises(ParameterError, model, f"recommend(k={k!r})", partial(model.recommend, ["u00"], k=k),
                parameter="k")
        if _has_similar(model):
            _raises(ParameterError, model, f"similar_items(k={k!r})",
                    partial(model.similar_items, [1000], k=k), parameter="k")


def check_similar_items(make_model: ModelFactory) -> None:
    """``similar_items`` leaves the item out, orders by score and refuses unknown items (if the model has it)."""
    data = sample_interactions()
    model = _fitted(make_model, data)
    if not _has_similar(model):
        _raises(NotSupportedError, model, "similar_items on a model without similarities",
                lambda: model.similar_items([data.item_ids[0]], k=3))
        return
    sims = model.similar_items(data.item_ids, k=5)
    _require(sims.items.shape == (data.n_items, 5), model, f"similar_items shape {sims.items.shape}")
    for item, row, scores in zip(data.item_ids, sims.items, sims.scores, strict=True):
        _require(item not in row.tolist(), model, f"item {item!r} is among its own similar items")
        finite = scores[np.isfinite(scores)]
        _require((np.diff(finite) <= 0).all(), model, "similar_items scores are not descending")
    _raises(NotFoundError, model, "similar_items of an unknown item", lambda: model.similar_items([-1], k=3),
            parameter="items")


def check_pickle_round_trip(make_model: ModelFactory) -> None:
    """A pickled and loaded model recommends exactly what the original does."""
    data = sample_interactions()
    model = _fitted(make_model, data)
    loaded = pickle.loads(pickle.dumps(model, protocol=5))
    _require(type(loaded) is type(model) and loaded.get_params() == model.get_params(), model,
             "pickling changed the model's type or hyperparameters")
    users = list(data.user_ids) + ["nobody"]
    _same_lists(model, "after pickling", model.recommend(users, k=5), loaded.recommend(users, k=5), exact=True)
    if _has_similar(model):
        _same_lists(model, "similar_items after pickling", model.similar_items(data.item_ids, k=3),
                    loaded.similar_items(data.item_ids, k=3), exact=True)


def check_batch_equals_single(make_model: ModelFactory) -> None:
    """Recommending for a batch gives each user what a call for that user alone gives."""
    data = sample_interactions()
    model = _fitted(make_model, data)
    users = list(data.user_ids) + ["nobody"]
    batch = model.recommend(users, k=6)
    for row, user in enumerate(users):
        one = model.recommend([user], k=6)
        part = Recommendations(batch.keys[row:row + 1], batch.items[row:row + 1], batch.scores[row:row + 1],
                               batch.fallback[row:row + 1])
        _same_lists(model, f"batch vs. single for {user!r}", part, one)
        _require(one.fallback[0] == batch.fallback[row], model, "batch and single disagree on fallback")


def check_external_id_types(make_model: ModelFactory) -> None:
    """Integer user ids with string item ids work as well as the reverse, in lists and numpy arrays."""
    data = sample_interactions(string_users=False)
    model = _fitted(make_model, data)
    as_list = model.recommend([int(u) for u in data.user_ids[:4]], k=3)
    as_array = model.recommend(np.asarray(data.user_ids[:4], dtype=np.int64), k=3)
    _same_lists(model, "ids as a list vs. as an array", as_list, as_array, exact=True)
    _require(not as_list.fallback.any(), model, "integer user ids were not recognised")
    _require(all(isinstance(i, str) for i in as_list.items.ravel()), model, "string item ids were not returned")
    if _has_similar(model):
        sims = model.similar_items(["i00"], k=2)
        _require(all(isinstance(i, str) for i in sims.items.ravel()), model, "similar_items lost the id type")


_CHECKS: tuple[Check, ...] = (
    check_init_stores_only_hyperparameters,
    check_params_round_trip,
    check_bad_hyperparameters_named_at_fit,
    check_not_fitted,
    check_fit_returns_self_and_learns,
    check_fit_does_not_mutate_input,
    check_deterministic,
    check_refit_forgets,
    check_recommend_shape_and_order,
    check_exclude_seen,
    check_candidates,
    check_empty_candidates,
    check_unknown_users,
    check_users_without_history,
    check_bad_k,
    check_similar_items,
    check_pickle_round_trip,
    check_batch_equals_single,
    check_external_id_types,
)
