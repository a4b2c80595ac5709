"""The evaluation protocol of the recommendations benchmark, and the reference implementations.

Protocol (from the project issue): ml-latest-small, ratings >= 4.0 as
positives, each user's last 20% of positives (by timestamp, ties by item id)
as test, users with fewer than 5 positives kept whole in training (603 test
users remain), every item the user did not interact with in training ranked.
Hyperparameters are chosen on a validation split carved from the training
part by the same rule; test never chooses anything.

The references are written here, independently of matinee's models:

* :func:`plain_ease` - EASE exactly as the paper writes it, in numpy:
  ``P = (X^T X + lambda I)^-1``, ``B = I - P / diag(P)``, zero diagonal;
* :func:`implicit_als` / :func:`implicit_bpr` - the ``implicit`` library
  called directly, recommending with ``filter_already_liked_items=True``.

Reference lists are scored twice: with matinee's public metric functions
(:mod:`matinee.apps.recs.metrics`) and with :func:`plain_metrics`, a plain
per-user loop written here, so the comparison does not rest on matinee's
metric code alone.
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

DEFAULT_DATA = Path(os.environ.get("MATINEE_MOVIELENS_SMALL", "/work/shared/data/ml-latest-small"))
MIN_RATING = 4.0
TEST_FRACTION = 0.2
MIN_POSITIVES = 5
EXPECTED_TEST_USERS = 603
WIDTH = 20  # longest list any metric here looks at

#: Reference figures from the issue (NDCG@10 unless named), measured with the same protocol.
ISSUE_FIGURES = {
    "MostPopular": 0.067,
    "ItemKNN": 0.093,
    "ALS": 0.097,
    "BPR": 0.082,
    "EASE": 0.105,
}

#: The small validation grid of each matinee model (every other hyperparameter at its default).
GRIDS = {
    "MostPopular": [{}],
    "ItemKNN": [{"neighbors": n, "shrink": s} for n in (50, 100, 200) for s in (10.0, 50.0)],
    "RP3beta": [{"alpha": a, "beta": b, "neighbors": 100} for a in (0.5, 1.0) for b in (0.3, 0.5)],
    "EASE": [{"l2": l2} for l2 in (100.0, 250.0, 500.0, 1000.0)],
    "ALS": [{"factors": f, "regularization": r, "iterations": 15, "random_state": 0}
            for f in (64, 128) for r in (1.0, 10.0)],
    "BPR": [{"factors": 64, "learning_rate": lr, "iterations": it, "random_state": 0}
            for lr in (0.003, 0.01, 0.03) for it in (50, 100)],
}
MODELS = tuple(GRIDS)

#: Which reference each matinee model is compared with (the same grid is run on it).
REFERENCES = {"EASE": "plain numpy EASE", "ALS": "implicit ALS", "BPR": "implicit BPR"}


def missing_data(path):
    """A one-line reason when the ml-latest-small files are not at ``path``, else None."""
    path = Path(path)
    for name in ("ratings.csv", "movies.csv"):
        if not (path / name).is_file():
            return f"ml-latest-small not found: no {name} in {path} (pass --data DIR)"
    return None


@dataclass
class Protocol:
    """The data and both splits: ``outer`` (train / test) and ``inner`` (train_inner / validation)."""

    data: object
    outer: object
    inner: object

    def part(self, name):
        """``"test"``: the outer split; ``"validation"``: the inner one."""
        return self.outer if name == "test" else self.inner


def load_protocol(path):
    """Load ml-latest-small and make both splits, with matinee's loader and splitter."""
    from matinee.apps.recs import load_movielens, user_temporal_split

    data = load_movielens(path, min_rating=MIN_RATING)
    outer = user_temporal_split(data, test_fraction=TEST_FRACTION, min_interactions=MIN_POSITIVES)
    inner = user_temporal_split(outer.train, test_fraction=TEST_FRACTION, min_interactions=MIN_POSITIVES)
    return Protocol(data, outer, inner)


def check_split(protocol):
    """Check matinee's split against the protocol, written out plainly; returns a list of problems.

    Recomputes each user's test set from the raw ratings (sort by timestamp,
    then item id; hold out the last ceil(20%) of users with >= 5 positives)
    and compares it with what ``user_temporal_split`` produced.
    """
    problems = []
    data, test = protocol.data, protocol.outer.test
    held = set(zip(test.users.tolist(), test.items.tolist(), strict=True))
    expected = set()
    by_user = {}
    order = np.lexsort((data.item_ids[data.items], data.timestamps, data.users))
    for row in order:
        by_user.setdefault(int(data.users[row]), []).append(int(data.items[row]))
    for user, items in by_user.items():
        n = len(items)
        if n < MIN_POSITIVES:
            continue
        t = min(math.ceil(round(TEST_FRACTION * n, 9)), n - 1)
        expected.update((user, item) for item in items[n - t:])
    if held != expected:
        problems.append(f"test set differs from the plain protocol: {len(held - expected)} extra, "
                        f"{len(expected - held)} missing pairs")
    users = len({u for u, _ in expected})
    if users != EXPECTED_TEST_USERS:
        problems.append(f"{users} test users, the issue says {EXPECTED_TEST_USERS}")
    return problems


# -- scoring lists ----------------------------------------------------------------------
def relevant_matrix(split):
    """Test positives minus what the user already has in training, as a users x items 0/1 CSR."""
    positive = (split.test.matrix > 0).astype(np.int8)
    seen = (split.train.matrix > 0).astype(np.int8)
    relevant = (positive - positive.multiply(seen)).tocsr()
    relevant.eliminate_zeros()
    return relevant


def test_users(split):
    """Internal indices of users with at least one relevant test item."""
    return np.flatnonzero(np.diff(relevant_matrix(split).indptr)).astype(np.int64)


def matinee_scores(recommended, relevant):
    """Per-user NDCG@10, Recall@20 and MAP@10 from matinee's public metric functions."""
    from matinee.apps.recs import metrics

    return {
        "ndcg@10": metrics.ndcg_at_k(recommended, relevant, 10),
        "recall@20": metrics.recall_at_k(recommended, relevant, 20),
        "map@10": metrics.map_at_k(recommended, relevant, 10),
    }


def plain_metrics(recommended, relevant):
    """The same three metrics as a plain loop over users (binary gains, log2 discounts).

    NDCG@10 = DCG@10 / ideal DCG of min(10, R) hits; Recall@20 = hits@20 / R;
    MAP@10 = sum of precision@r at the hit ranks r <= 10, over min(10, R).
    """
    out = {"ndcg@10": [], "recall@20": [], "map@10": []}
    for row, user_items in zip(recommended, np.split(relevant.indices, relevant.indptr[1:-1]), strict=True):
        truth = set(user_items.tolist())
        r = len(truth)
        ranked = [int(i) for i in row if i >= 0]
        hit = [item in truth for item in ranked]
        dcg = sum(1.0 / math.log2(rank + 2) for rank, h in enumerate(hit[:10]) if h)
        ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(10, r)))
        out["ndcg@10"].append(dcg / ideal if ideal else 0.0)
        out["recall@20"].append(sum(hit[:20]) / r if r else 0.0)
        found, precision_sum = 0, 0.0
        for rank, h in enumerate(hit[:10]):
            if h:
                found += 1
                precision_sum += found / (rank + 1)
        out["map@10"].append(precision_sum / min(10, r) if r else 0.0)
    return {name: np.asarray(values) for name, values in out.items()}


def top_items(scores, seen):
    """Top ``WIDTH`` items per row of dense ``scores``, seen items excluded, ties by lower index."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    coo = seen.tocoo()
    scores[coo.row, coo.col] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :WIDTH]
    return np.where(np.isfinite(np.take_along_axis(scores, order, axis=1)), order, -1)


# -- references -------------------------------------------------------------------------
class PlainEASE:
    """EASE as written in the paper, in plain numpy (float64, every catalogue item)."""

    name = "plain numpy EASE"

    def __init__(self, l2=250.0):
        self.l2 = l2

    def fit(self, matrix):
        x = sp.csr_matrix(matrix, dtype=np.float64)
        n = x.shape[1]
        gram = (x.T @ x).toarray()
        gram[np.diag_indices(n)] += self.l2
        p = np.linalg.inv(gram)
        self.b = np.eye(n) - p / np.diag(p)  # B = I - P diag(1/diag(P))
        np.fill_diagonal(self.b, 0.0)
        self.x = x
        return self

    def recommend(self, users):
        return top_items(self.x[users] @ self.b, self.x[users])


class ImplicitModel:
    """An ``implicit`` model called directly, BLAS held at one thread as ``implicit`` asks."""

    def __init__(self, **params):
        self.params = params

    def _make(self):
        raise NotImplementedError

    def fit(self, matrix):
        from threadpoolctl import threadpool_limits

        self.x = sp.csr_matrix(matrix, dtype=np.float32)
        with threadpool_limits(limits=1, user_api="blas"):
            self.model = self._make()
            self.model.fit(self.x.copy(), show_progress=False)
        return self

    def recommend(self, users):
        ids, scores = self.model.recommend(users, self.x[users], N=WIDTH, filter_already_liked_items=True)
        ids = np.where(np.isfinite(scores), ids, -1).astype(np.int64)
        leaked = self.x[users].multiply(_indicator(ids, self.x.shape[1])).nnz
        if leaked:
            raise AssertionError(f"implicit recommended {leaked} items the users already had")
        return ids


class ImplicitALS(ImplicitModel):
    name = "implicit ALS"

    def _make(self):
        from implicit.als import AlternatingLeastSquares

        p = dict(self.params)
        return AlternatingLeastSquares(
            factors=p.pop("factors", 64), regularization=p.pop("regularization", 10.0),
            alpha=p.pop("alpha", 1.0), iterations=p.pop("iterations", 15),
            random_state=p.pop("random_state", None), num_threads=p.pop("num_threads", 0),
            dtype=np.float32, use_gpu=False, **p,
        )


class ImplicitBPR(ImplicitModel):
    name = "implicit BPR"

    def _make(self):
        from implicit.bpr import BayesianPersonalizedRanking

        p = dict(self.params)
        return BayesianPersonalizedRanking(
            factors=p.pop("factors", 64), learning_rate=p.pop("learning_rate", 0.003),
            regularization=p.pop("regularization", 0.01), iterations=p.pop("iterations", 200),
            random_state=p.pop("random_state", None), num_threads=p.pop("num_threads", 1),
            dtype=np.float32, use_gpu=False, **p,
        )


def _indicator(ids, n_items):
    rows = np.repeat(np.arange(len(ids)), ids.shape[1])
    cols = ids.ravel()
    keep = cols >= 0
    return sp.csr_matrix((np.ones(keep.sum()), (rows[keep], cols[keep])), shape=(len(ids), n_items))


def make_reference(model, params):
    """The reference counterpart of matinee model ``model`` with ``params``."""
    if model == "EASE":
        return PlainEASE(l2=params.get("l2", 250.0))
    if model == "ALS":
        return ImplicitALS(**params)
    if model == "BPR":
        return ImplicitBPR(**params)
    raise KeyError(model)


def make_matinee(model, params):
    from matinee.apps.recs import models

    return getattr(models, model)(**params)


def label(params):
    shown = {k: v for k, v in params.items() if k != "random_state"}
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()) or "-"


# -- statistics -------------------------------------------------------------------------
def paired_bootstrap(a, b, resamples=1000, seed=0, level=0.95):
    """Mean of ``a - b`` over users and its percentile bootstrap interval (users resampled, paired)."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high),
            "share_positive": float((means > 0).mean()), "resamples": resamples, "seed": seed,
            "users": len(diff)}
