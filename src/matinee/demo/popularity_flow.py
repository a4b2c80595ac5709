"""A small, real example flow: simulate plays on a streaming service, train and compare recommenders.

Run it with ``matinee demo`` or ``python -m matinee.demo.popularity_flow run``.
"""

from __future__ import annotations

from typing import Any

from matinee import FlowSpec, Parameter, current, step


def simulate_plays(users: int, items: int, seed: int) -> dict[str, Any]:
    """Plays of ``users`` members on ``items`` titles: long-tail popularity, genre tastes, time order."""
    import numpy as np

    from matinee.errors import ParameterError

    for name, value in (("users", users), ("items", items)):
        if value < 10:
            raise ParameterError(f"the demo needs at least 10 {name}, not {value}", parameter=name)
    rng = np.random.default_rng(seed)
    genres = 8
    item_genre = rng.integers(0, genres, items)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    rng.shuffle(popularity)
    release = rng.uniform(0, 1, items)  # titles appear over time...
    release[rng.permutation(items)[: max(5, items // 5)]] = 0.0  # ...after a launch catalogue
    taste = rng.dirichlet(np.full(genres, 0.3), users)
    rows = []
    for user in range(users):
        n = rng.integers(10, 40)
        times = np.sort(rng.uniform(0, 1, n))
        for t in times:
            weights = (popularity * taste[user, item_genre] + 1e-12) * (release <= t)
            rows.append((user, int(rng.choice(items, p=weights / weights.sum())), float(t)))
    plays = np.array(rows, dtype=[("user", "i4"), ("item", "i4"), ("ts", "f8")])
    return {"plays": plays, "item_genre": item_genre}


def recommend(config: dict[str, Any], train: Any, item_genre: Any, items: int, k: int) -> dict[int, list[int]]:
    """Top-k unseen titles per member for one model configuration."""
    import numpy as np

    cutoff = train["ts"].max() - config.get("window", 1.0)
    recent = train[train["ts"] >= cutoff]
    counts = np.bincount(recent["item"], minlength=items).astype(float)
    out = {}
    for user in np.unique(train["user"]):
        seen = train["item"][train["user"] == user]
        scores = counts.copy()
        if config.get("genre_boost"):
            liked = np.bincount(item_genre[seen], minlength=item_genre.max() + 1)
            scores *= 1.0 + config["genre_boost"] * liked[item_genre] / max(1, liked.sum())
        scores[seen] = -np.inf
        out[int(user)] = [int(i) for i in np.argsort(-scores, kind="stable")[:k]]
    return out


class PopularityDemoFlow(FlowSpec):
    """Simulate a streaming service's plays, then train and compare popularity recommenders."""

    users = Parameter("users", default=400, help="simulated members")
    items = Parameter("items", default=300, help="simulated titles")
    seed = Parameter("seed", default=7, help="random seed of the simulation")
    k = Parameter("k", default=10, help="length of each recommendation list")

    @step
    def start(self):
        """Simulate plays and split them in time: the last 20% of the timeline is the test set."""
        data = simulate_plays(self.users, self.items, self.seed)
        plays = data["plays"]
        self.item_genre = data["item_genre"]
        cut = float(sorted(plays["ts"])[int(0.8 * len(plays))])
        self.train = plays[plays["ts"] < cut]
        self.test = plays[plays["ts"] >= cut]
        print(f"simulated {len(plays)} plays: {len(self.train)} to train on, {len(self.test)} to test")
        self.configs = [
            {"name": "popular-all-time"},
            {"name": "popular-recent", "window": 0.2},
            {"name": "popular-genre", "genre_boost": 3.0},
            {"name": "popular-recent-genre", "window": 0.2, "genre_boost": 3.0},
        ]
        self.next(self.train_model, foreach="configs")

    @step
    def train_model(self):
        """Fit one configuration and measure recall and hit rate on the test plays."""
        self.config = self.input
        recs = recommend(self.config, self.train, self.item_genre, self.items, self.k)
        hits, relevant, users_hit, users = 0, 0, 0, 0
        for user in set(int(u) for u in self.test["user"]):
            truth = set(int(i) for i in self.test["item"][self.test["user"] == user])
            got = len(truth & set(recs.get(user, [])))
            hits += got
            relevant += len(truth)
            users_hit += got > 0
            users += 1
        self.metrics = {f"recall@{self.k}": hits / max(1, relevant), f"hit_rate@{self.k}": users_hit / max(1, users)}
        current.log_metrics({f"{self.config['name']}/{m}": v for m, v in self.metrics.items()})
        print(f"{self.config['name']}: " + ", ".join(f"{m} {v:.3f}" for m, v in self.metrics.items()))
        self.next(self.pick)

    @step
    def pick(self, inputs):
        """Rank the configurations and keep the best by recall."""
        key = f"recall@{inputs[0].k}"
        self.leaderboard = sorted(
            ({"model": i.config["name"], **i.metrics} for i in inputs), key=lambda row: -row[key]
        )
        self.best = self.leaderboard[0]
        self.merge_artifacts(inputs, include=["item_genre"])
        self.next(self.end)

    @step
    def end(self):
        """Report the winner."""
        print(f"best model: {self.best['model']}")


if __name__ == "__main__":
    PopularityDemoFlow()
