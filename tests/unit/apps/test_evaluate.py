"""Evaluation: the protocol by hand, chunking that bounds memory, logging inside flows, MovieLens."""

from __future__ import annotations

import doctest
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matinee.apps.recs import Interactions, NotFittedError, RecommenderBase
from matinee.apps.recs import evaluation as module_under_test
from matinee.apps.recs import metrics as m
from matinee.apps.recs.evaluation import CELLS_PER_CHUNK, METRICS, evaluate
from matinee.apps.recs.splits import Split, leave_one_out, random_split, user_temporal_split
from matinee.core.client import Run
from matinee.core.runtime.runner import Runner
from matinee.errors import ParameterError

MOVIELENS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ml-latest-small"


class MostPopular(RecommenderBase):
    """Everyone gets the items most users interacted with."""

    def _fit(self, matrix):
        pass

    def _score(self, users):
        return np.broadcast_to(self.popularity_, (len(users), len(self.popularity_)))


class Recording(MostPopular):
    """Remembers how many users each scoring call covered."""

    def _fit(self, matrix):
        self.batches_ = []

    def _score(self, users):
        self.batches_.append(len(users))
        return super()._score(users)


def make_log(seed: int = 0, n_users: int = 120, n_items: int = 80, n: int = 3000) -> Interactions:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "user_id": rng.integers(0, n_users, size=n),
        "item_id": np.minimum(rng.zipf(1.3, size=n), n_items),
        "timestamp": rng.random(n),
    })
    return Interactions.from_frame(frame.drop_duplicates(["user_id", "item_id"]))


@pytest.fixture
def split() -> Split:
    return user_temporal_split(make_log(), test_fraction=0.2, min_interactions=5)


def test_a_worked_example():
    log = pd.DataFrame({
        "user_id": ["a", "a", "a", "b", "b", "c", "c", "c"],
        "item_id": [1, 2, 3, 1, 4, 2, 1, 4],
        "timestamp": [1, 2, 3, 1, 2, 1, 2, 3],
    })
    split = leave_one_out(Interactions.from_frame(log))  # test: a->3, b->4, c->4
    model = MostPopular().fit(split.train)  # popularity in training: 1:3, 2:2, 3:0, 4:0
    table = evaluate(model, split, k=(1, 2), metrics=("recall", "precision", "mrr", "coverage", "novelty"))
    # a ranks [3, 4]: hit at 1; b ranks [2, 3]: miss; c ranks [3, 4]: hit at 2
    expected = pd.DataFrame({
        "metric": ["recall", "recall", "precision", "precision", "mrr", "mrr", "coverage", "coverage",
                   "novelty", "novelty"],
        "k": [1, 2] * 5,
        "value": [1 / 3, 2 / 3, 1 / 3, 2 / 6, 1 / 3, 1 / 2, 2 / 4, 3 / 4,
                  (3 * np.log2(3) - 1) / 3, (6 * np.log2(3) - 1) / 6],
        "users": [3] * 10,
    })
    # novelty: 3 users in training; unseen items 3 and 4 count as 1/3 (log2 3 bits), item 2 as 2/3
    pd.testing.assert_frame_equal(table, expected)


def test_every_metric_at_every_k_matches_the_metric_functions(split: Split):
    model = MostPopular().fit(split.train)
    table = evaluate(model, split, k=(5, 10, 20))
    assert list(table.columns) == ["metric", "k", "value", "users"]
    assert table[["metric", "k"]].values.tolist() == [[n, k] for n in METRICS for k in (5, 10, 20)]
    users = np.flatnonzero(np.diff(split.test.matrix.indptr))
    relevant = split.test.matrix[users]
    assert relevant.multiply(split.train.matrix[users]).nnz == 0  # no repeats in this log
    recommended, _ = model.recommend_index(users, 20, exclude_seen=True)
    popularity = np.asarray((split.train.matrix > 0).sum(axis=0)).ravel()
    n_train_users = np.count_nonzero(np.diff(split.train.matrix.indptr))
    functions = {"ndcg": m.ndcg_at_k, "recall": m.recall_at_k, "precision": m.precision_at_k,
                 "map": m.map_at_k, "mrr": m.mrr, "hit_rate": m.hit_rate_at_k}
    values = table.set_index(["metric", "k"])["value"]
    for k in (5, 10, 20):
        for name, function in functions.items():
            assert values[name, k] == pytest.approx(function(recommended, relevant, k).mean(), abs=1e-12)
        assert values["coverage", k] == m.catalogue_coverage(recommended, split.train.n_items, k)
        assert values["mean_popularity", k] == pytest.approx(m.mean_popularity(recommended, popularity, k).mean())
        assert values["novelty", k] == pytest.approx(
            m.novelty(recommended, popularity, n_train_users, k).mean())
    assert (table["users"] == len(users)).all()


@pytest.mark.parametrize("batch_size", [1, 7, 50, 10_000])
def test_chunking_does_not_change_the_result(split: Split, batch_size: int):
    model = MostPopular().fit(split.train)
    pd.testing.assert_frame_equal(evaluate(model, split, batch_size=batch_size), evaluate(model, split))


def test_a_large_catalogue_is_scored_in_bounded_chunks():
    n_users, n_items = 1500, 20_000
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"user_id": np.repeat(np.arange(n_users), 6),
                          "item_id": rng.integers(0, n_items, size=6 * n_users),
                          "timestamp": rng.random(6 * n_users)})
    frame = pd.concat([frame, pd.DataFrame({"user_id": 0, "item_id": np.arange(n_items), "timestamp": 0.0})])
    split = leave_one_out(Interactions.from_frame(frame))
    model = Recording().fit(split.train)
    full_array = n_users * n_items * 4  # what one users x items float32 score array would take
    tracemalloc.start()
    try:
        table = evaluate(model, split, k=10, metrics=("ndcg", "coverage"), batch_size=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(model.batches_) <= 100 and sum(model.batches_) == table["users"].iloc[0]
    assert peak < full_array / 3, f"peak {peak / 2**20:.0f} MiB for a {full_array / 2**20:.0f} MiB array"
    model.batches_.clear()
    evaluate(model, split, k=10, metrics=("ndcg",))
    assert max(model.batches_) <= CELLS_PER_CHUNK // n_items < n_users


def test_test_items_already_seen_in_training_are_not_relevant():
    # u1 plays item 1 again at the end: it cannot be recommended (seen), so it is not counted
    log = pd.DataFrame({"user_id": [1, 1, 1, 2, 2], "item_id": [1, 2, 1, 1, 3], "timestamp": [1, 2, 3, 1, 2]})
    split = leave_one_out(Interactions.from_frame(log))
    table = evaluate(MostPopular().fit(split.train), split, k=1, metrics=("recall",))
    assert table.to_dict("records") == [{"metric": "recall", "k": 1, "value": 0.0, "users": 1}]


def test_users_restricts_the_evaluation_and_a_pair_is_a_split(split: Split):
    model = MostPopular().fit(split.train)
    test_users = split.test.user_ids[np.unique(split.test.users)]
    some = evaluate(model, (split.train, split.test), k=10, metrics=("ndcg",),
                    users=list(test_users[:5]) + [split.train.user_ids[0]])
    assert some["users"].tolist() == [len(set(test_users[:5]))]
    one = evaluate(model, split, k=10, metrics="ndcg", users=test_users[:1])
    uid = int(split.train.user_index(test_users[:1])[0])
    rec, _ = model.recommend_index(np.array([uid]), 10)
    assert one["value"].iloc[0] == pytest.approx(m.ndcg_at_k(rec, split.test.matrix[[uid]])[0])


def test_k_may_be_any_sequence_and_repeats_are_dropped(split: Split):
    model = MostPopular().fit(split.train)
    expected = evaluate(model, split, k=(3, 5), metrics=("ndcg",))
    for k in ([3, 5, 3], range(3, 6, 2), np.array([3, 5])):
        pd.testing.assert_frame_equal(evaluate(model, split, k=k, metrics=("ndcg",)), expected)


def test_k_larger_than_the_catalogue_is_padded():
    log = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 2], "timestamp": [1, 2, 1, 2]})
    split = leave_one_out(Interactions.from_frame(log))
    table = evaluate(MostPopular().fit(split.train), split, k=50, metrics=("precision", "recall"))
    assert table["value"].tolist() == [1 / 50, 1.0]


def test_nothing_is_printed_and_no_bar_is_drawn_off_a_terminal(split: Split, capsys):
    evaluate(MostPopular().fit(split.train), split, batch_size=3)
    assert capsys.readouterr() == ("", "")


def unfitted_split():
    data = make_log(1)
    return random_split(data, 0.2, random_state=0)


def other_maps(split: Split) -> tuple[Interactions, Interactions]:
    return split.train, make_log(2)


BAD = [
    (lambda s, mdl: evaluate(mdl, s, k=0), "k must be a positive", "k"),
    (lambda s, mdl: evaluate(mdl, s, k=(10, -1)), "k must be a positive", "k"),
    (lambda s, mdl: evaluate(mdl, s, k="10"), "k must be a positive", "k"),
    (lambda s, mdl: evaluate(mdl, s, k=[]), "k must be a positive", "k"),
    (lambda s, mdl: evaluate(mdl, s, metrics=("ndcg", "auc")), "unknown metric 'auc'; choose from", "metrics"),
    (lambda s, mdl: evaluate(mdl, s, metrics=()), "metrics is empty", "metrics"),
    (lambda s, mdl: evaluate(mdl, s, batch_size=0), "batch_size must be", "batch_size"),
    (lambda s, mdl: evaluate(mdl, s, users=["nobody"]), "unknown user id 'nobody'", "users"),
    (lambda s, mdl: evaluate(mdl, s.train), "Split or a \\(train, test\\) pair", "split"),
    (lambda s, mdl: evaluate(mdl, other_maps(s)), "share their id maps", "split"),
    (lambda s, mdl: evaluate(MostPopular().fit(make_log()), s), "fitted on other data", "model"),
    (lambda s, mdl: evaluate("model", s), "must be a RecommenderBase", "model"),
    (lambda s, mdl: evaluate(mdl, Split(s.train, s.train.subset(np.zeros(len(s.train), bool)))),
     "no user to evaluate", "split"),
]


@pytest.mark.parametrize(("call", "message", "parameter"), BAD)
def test_bad_arguments_are_named(split: Split, call, message, parameter):
    model = MostPopular().fit(split.train)
    with pytest.raises(ParameterError, match=message) as info:
        call(split, model)
    assert info.value.parameter == parameter


def test_an_unfitted_model_is_refused(split: Split):
    with pytest.raises(NotFittedError):
        evaluate(MostPopular(), split)


FLOW = """
import numpy as np
import pandas as pd
from matinee import FlowSpec, current, step
from matinee.apps.recs import Interactions, RecommenderBase
from matinee.apps.recs.evaluation import evaluate
from matinee.apps.recs.splits import leave_one_out

class Popular(RecommenderBase):
    def _fit(self, matrix):
        pass

    def _score(self, users):
        return np.broadcast_to(self.popularity_, (len(users), len(self.popularity_)))

class F(FlowSpec):
    @step
    def start(self):
        log = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 3, 3], "item_id": [1, 2, 3, 1, 3, 2, 1],
                            "timestamp": [1, 2, 3, 1, 2, 1, 2]})
        split = leave_one_out(Interactions.from_frame(log))
        self.table = evaluate(Popular().fit(split.train), split, k=(1, 2), metrics=("ndcg", "recall"))
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def test_inside_a_flow_step_every_value_is_logged_to_the_run(load_flow):
    run_id = Runner(load_flow(FLOW), executor="inline", quiet=True).run()
    run = Run(f"F/{run_id}")
    table = run.data.table
    logged = {name: series.values for name, series in run["start"].task.metrics.items()}
    assert logged == {f"{r.metric}@{r.k}": [pytest.approx(r.value)] for r in table.itertuples()}


@pytest.mark.skipif(not MOVIELENS.is_dir(), reason=f"MovieLens data not found at {MOVIELENS}")
def test_most_popular_on_the_movielens_protocol():
    """ratings >= 4, each user's last 20% of positives as test, users with < 5 positives skipped."""
    ratings = pd.read_csv(MOVIELENS / "ratings.csv")
    data = Interactions.from_frame(ratings, user_col="userId", item_col="movieId",
                                   rating_col="rating", min_rating=4.0)
    split = user_temporal_split(data, test_fraction=0.2, min_interactions=5)
    table = evaluate(MostPopular().fit(split.train), split, k=(10, 20)).set_index(["metric", "k"])
    assert (table["users"] == 603).all()
    assert table.loc[("ndcg", 10), "value"] == pytest.approx(0.067, abs=0.001)  # the reference figure
    assert table.loc[("recall", 20), "value"] == pytest.approx(0.0815, abs=0.001)


def test_docstring_examples_run():
    result = doctest.testmod(module_under_test, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
