"""The recommendations training flow: load -> split -> fit a grid in parallel -> pick on validation -> test.

Run it on the simulated streaming service (the default), on MovieLens, or on
any interaction file::

    python -m matinee.apps.recs.flow run
    python -m matinee.apps.recs.flow run --movielens ../data/ml-latest-small
    python -m matinee.apps.recs.flow run --interactions plays.parquet

Protocol: each user's last ``test_fraction`` of positives (by time) is the
test set; the same cut carves a validation set out of the rest. Every
configuration of the grid is fitted on the inner training part and scored on
validation; the best by validation NDCG@10 is refitted on all training data
and scored once on test. Test data never chooses anything. The winner is
stored as the ``model`` artifact with its metrics and the dataset hash.
"""

from __future__ import annotations

import time
from typing import Any

from matinee import FlowSpec, JSONType, Parameter, current, step

#: The default grid: one configuration per model family.
DEFAULT_GRID = [
    {"model": "MostPopular", "params": {}},
    {"model": "ItemKNN", "params": {"neighbors": 100, "shrink": 50.0}},
    {"model": "RP3beta", "params": {"alpha": 0.5, "beta": 0.5, "neighbors": 100}},
    {"model": "EASE", "params": {"l2": 250.0}},
    {"model": "ALS", "params": {"factors": 64, "iterations": 15, "random_state": 0}},
    {"model": "BPR", "params": {"factors": 64, "iterations": 100, "random_state": 0}},
]

#: The metric that picks the winner.
SELECT_BY = "ndcg@10"


def make_model(config: dict[str, Any]) -> Any:
    """A fresh model from a grid entry ``{"model": name, "params": {...}}``."""
    from matinee.apps.recs import models
    from matinee.errors import ParameterError

    name = config.get("model")
    if name not in models.__all__:
        raise ParameterError(
            f"unknown model {name!r} in the grid; choose from {', '.join(models.__all__)}", parameter="grid"
        )
    return getattr(models, name)(**config.get("params", {}))


def load_interactions(source: str, path: str, sim_size: str, seed: int, min_rating: float) -> Any:
    """Interactions from the simulator, a MovieLens folder, or a CSV/Parquet file."""
    from matinee.apps.recs import loaders
    from matinee.apps.recs.interactions import Interactions
    from matinee.errors import ParameterError

    if source == "sim":
        from matinee.apps.sim import StreamingService

        service = StreamingService(sim_size, seed=seed)
        return Interactions.from_frame(service.interactions(), item_metadata=service.titles())
    if source == "movielens":
        return loaders.load_movielens(path, min_rating=min_rating)
    if source == "file":
        return loaders.load_parquet(path) if str(path).endswith(".parquet") else loaders.load_csv(path)
    raise ParameterError(f"unknown source {source!r}", parameter="source")


def label(config: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in config.get("params", {}).items() if k != "random_state")
    return f"{config['model']}({params})"


class RecsTrainingFlow(FlowSpec):
    """Train and compare recommenders; keep the best by validation NDCG@10."""

    movielens = Parameter("movielens", default="", help="a MovieLens (ml-latest family) folder to train on")
    interactions = Parameter("interactions", default="", help="a CSV or Parquet interaction log to train on")
    sim_size = Parameter("sim-size", default="small", help="simulator size when no data is given: tiny, small, medium, large")
    seed = Parameter("seed", default=7, help="seed of the simulator")
    min_rating = Parameter("min-rating", default=4.0, help="MovieLens ratings at least this are positives")
    test_fraction = Parameter("test-fraction", default=0.2, help="each user's latest share held out")
    min_interactions = Parameter("min-interactions", default=5, help="users with fewer positives are not evaluated")
    grid = Parameter("grid", type=JSONType, default="[]", help="JSON list of {model, params}; default one per family")

    @step
    def start(self):
        """Load the interactions and split them: train / test, then train_inner / validation."""
        from matinee.apps.recs.splits import user_temporal_split

        if self.movielens:
            self.source, path = "movielens", self.movielens
        elif self.interactions:
            self.source, path = "file", self.interactions
        else:
            self.source, path = "sim", ""
        data = load_interactions(self.source, path, self.sim_size, self.seed, self.min_rating)
        self.dataset_hash = data.dataset_hash
        self.data_summary = {"users": data.n_users, "items": data.n_items, "interactions": len(data)}
        self.outer = user_temporal_split(data, test_fraction=self.test_fraction, min_interactions=self.min_interactions)
        self.inner = user_temporal_split(
            self.outer.train, test_fraction=self.test_fraction, min_interactions=self.min_interactions
        )
        self.configs = list(self.grid) if self.grid else DEFAULT_GRID
        for config in self.configs:
            make_model(config)  # fail now, not in a branch, on a bad grid entry
        print(f"{self.source}: {data}; dataset {self.dataset_hash[:12]}")
        self.next(self.fit, foreach="configs")

    @step
    def fit(self):
        """Fit one configuration on train_inner and score it on validation."""
        from matinee.apps.recs.evaluation import evaluate

        self.config = self.input
        started = time.perf_counter()
        model = make_model(self.config).fit(self.inner.train)
        self.fit_seconds = time.perf_counter() - started
        table = evaluate(model, self.inner, k=(10, 20), metrics=("ndcg", "recall", "map", "coverage"),
                         log_prefix=f"{self.config['model']}/validation/")
        self.validation = {f"{r.metric}@{r.k}": float(r.value) for r in table.itertuples()}
        current.log_metric(f"{self.config['model']}/fit_seconds", self.fit_seconds)
        print(f"{label(self.config)}: validation {SELECT_BY} {self.validation[SELECT_BY]:.4f} "
              f"(fit {self.fit_seconds:.2f}s)")
        self.next(self.select)

    @step
    def select(self, inputs):
        """Rank the configurations on validation and refit the best on all training data."""
        from matinee.apps.recs.evaluation import evaluate

        self.leaderboard = sorted(
            ({"model": i.config["model"], "params": label(i.config), **i.validation, "fit_seconds": i.fit_seconds}
             for i in inputs),
            key=lambda row: -row[SELECT_BY],
        )
        best = max(inputs, key=lambda i: i.validation[SELECT_BY])
        self.best_config = best.config
        self.merge_artifacts(inputs, include=["outer", "dataset_hash", "data_summary", "source"])
        self.model = make_model(self.best_config).fit(self.outer.train)
        table = evaluate(self.model, self.outer, k=(10, 20), log_prefix="test/")
        self.test_metrics = {f"{r.metric}@{r.k}": float(r.value) for r in table.itertuples()}
        print(f"best: {label(self.best_config)}; test {SELECT_BY} {self.test_metrics[SELECT_BY]:.4f}")
        self.next(self.end)

    @step
    def end(self):
        """The winner: ``model``, ``best_config``, ``test_metrics``, ``leaderboard``, ``dataset_hash``."""
        del self.outer  # the split stays in the start step's artifacts; keep the end step light


if __name__ == "__main__":
    RecsTrainingFlow()
