"""A hyperparameter grid over recommenders, one foreach branch per configuration, on Ray.

Each configuration is fitted on the inner training split of the simulated
streaming service and scored on validation, in parallel; the join ranks them.
The ``fit`` step asks for one CPU and 2 GB per configuration (``@resources``),
so Ray runs as many at once as the cluster holds, up to ``--max-workers``::

    python examples/ray_grid_search.py run --executor ray                 # a local Ray
    python examples/ray_grid_search.py run --ray-address ray://head:10001  # a cluster
    python examples/ray_grid_search.py run                                 # local processes

Read the result afterwards like any run::

    from matinee import Flow
    Flow("GridSearchFlow").latest_successful_run.data.leaderboard
"""

from __future__ import annotations

import time

from matinee import FlowSpec, JSONType, Parameter, current, resources, step

#: The default grid: a few values of the main knob of each model family.
DEFAULT_GRID = [
    {"model": "MostPopular", "params": {}},
    *({"model": "ItemKNN", "params": {"neighbors": n, "shrink": 50.0}} for n in (20, 50, 100, 200)),
    *({"model": "RP3beta", "params": {"alpha": a, "beta": 0.5, "neighbors": 100}} for a in (0.5, 1.0)),
    *({"model": "EASE", "params": {"l2": l2}} for l2 in (50.0, 250.0, 1000.0)),
    *({"model": "ALS", "params": {"factors": f, "iterations": 15, "random_state": 0}} for f in (32, 64)),
]


class GridSearchFlow(FlowSpec):
    """Fit a grid of recommender configurations in parallel and rank them on validation NDCG@10."""

    sim_size = Parameter("sim-size", default="small", help="simulator size: tiny, small, medium, large")
    seed = Parameter("seed", default=7, help="seed of the simulator")
    grid = Parameter("grid", type=JSONType, default="[]", help="JSON list of {model, params}; default a grid per family")
    test_fraction = Parameter("test-fraction", default=0.2, help="each member's latest share held out")

    @step
    def start(self):
        """Simulate the service's plays and split them by time: train_inner / validation."""
        from matinee.apps.recs.flow import load_interactions, make_model
        from matinee.apps.recs.splits import user_temporal_split

        data = load_interactions("sim", "", self.sim_size, self.seed, 0.0)
        self.dataset_hash = data.dataset_hash
        outer = user_temporal_split(data, test_fraction=self.test_fraction)
        self.inner = user_temporal_split(outer.train, test_fraction=self.test_fraction)
        self.configs = list(self.grid) or DEFAULT_GRID
        for config in self.configs:
            make_model(config)  # a bad grid entry fails here, not in a branch
        print(f"{data}: {len(self.configs)} configurations")
        self.next(self.fit, foreach="configs")

    @resources(cpu=1, memory=2048)
    @step
    def fit(self):
        """Fit one configuration and score it on validation."""
        from matinee.apps.recs.evaluation import evaluate
        from matinee.apps.recs.flow import label, make_model

        self.config = self.input
        started = time.perf_counter()
        model = make_model(self.config).fit(self.inner.train)
        self.fit_seconds = time.perf_counter() - started
        table = evaluate(model, self.inner, k=(10,), metrics=("ndcg", "recall"), log_prefix=None)
        self.validation = {f"{r.metric}@{r.k}": float(r.value) for r in table.itertuples()}
        current.log_metric(f"{label(self.config)}/ndcg@10", self.validation["ndcg@10"])
        print(f"{label(self.config)}: ndcg@10 {self.validation['ndcg@10']:.4f} (fit {self.fit_seconds:.2f}s)")
        self.next(self.rank)

    @step
    def rank(self, inputs):
        """The leaderboard, best first, and the best configuration."""
        from matinee.apps.recs.flow import label

        self.leaderboard = sorted(
            ({"model": i.config["model"], "config": label(i.config), **i.validation, "fit_seconds": i.fit_seconds}
             for i in inputs),
            key=lambda row: -row["ndcg@10"],
        )
        self.best = max(inputs, key=lambda i: i.validation["ndcg@10"]).config
        self.merge_artifacts(inputs, include=["dataset_hash"])
        self.next(self.end)

    @step
    def end(self):
        """Print the leaderboard."""
        for row in self.leaderboard:
            print(f"{row['ndcg@10']:.4f}  {row['config']}  ({row['fit_seconds']:.2f}s)")


if __name__ == "__main__":
    GridSearchFlow()
