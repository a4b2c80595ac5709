"""Batch scoring: the top-k titles for every member, written as Parquet, one partition per foreach branch.

``start`` fits a recommender on the simulated streaming service's plays and
splits the members into ``--partitions`` groups; each ``score`` branch ranks the
catalogue for its group and writes ``part-NNNNN.parquet`` (columns ``user_id``,
``rank``, ``item_id``, ``score``) under ``--output``, a folder or any fsspec URL
(``s3://bucket/scores``: on a cluster, use a place every node can write)::

    python examples/ray_batch_scoring.py run --executor ray --output scores/
    python examples/ray_batch_scoring.py run --output scores/        # local processes

    import pandas as pd
    pd.read_parquet("scores/")
"""

from __future__ import annotations

from matinee import FlowSpec, Parameter, resources, step


class BatchScoringFlow(FlowSpec):
    """Fit a recommender, then score every member's top-k in parallel partitions written as Parquet."""

    sim_size = Parameter("sim-size", default="small", help="simulator size: tiny, small, medium, large")
    seed = Parameter("seed", default=7, help="seed of the simulator")
    model_name = Parameter("model", default="EASE", help="the recommender to fit (a matinee.apps.recs model)")
    k = Parameter("k", default=20, help="titles per member")
    partitions = Parameter("partitions", default=8, help="Parquet partitions, scored in parallel")
    output = Parameter("output", default="scores", help="folder or fsspec URL for the Parquet partitions")

    @step
    def start(self):
        """Fit the model on every play and split the members into partitions."""
        import numpy as np

        from matinee.apps.recs.flow import load_interactions, make_model

        data = load_interactions("sim", "", self.sim_size, self.seed, 0.0)
        self.model = make_model({"model": self.model_name, "params": {}}).fit(data)
        members = np.asarray(data.user_ids)
        self.members = len(members)
        self.groups = [part.tolist() for part in np.array_split(members, max(1, min(self.partitions, len(members))))]
        print(f"{data}: {self.members} members in {len(self.groups)} partitions")
        self.next(self.score, foreach="groups")

    @resources(cpu=1, memory=1024)
    @step
    def score(self):
        """Rank the catalogue for this partition's members and write it as one Parquet file."""
        import fsspec

        frame = self.model.recommend(self.input, k=self.k).to_frame()
        frame = frame.rename(columns={"key": "user_id"})[["user_id", "rank", "item_id", "score"]]
        fs, root = fsspec.core.url_to_fs(self.output)
        fs.makedirs(root, exist_ok=True)
        self.path = f"{self.output.rstrip('/')}/part-{self.index:05d}.parquet"
        frame.to_parquet(self.path, index=False)
        self.rows = len(frame)
        print(f"{self.rows} rows -> {self.path}")
        self.next(self.join)

    @step
    def join(self, inputs):
        """Count what was written."""
        self.paths = [i.path for i in inputs]
        self.rows = sum(i.rows for i in inputs)
        self.merge_artifacts(inputs, include=["members"])
        self.next(self.end)

    @step
    def end(self):
        print(f"{self.rows} recommendations for {self.members} members in {len(self.paths)} files")


if __name__ == "__main__":
    BatchScoringFlow()
