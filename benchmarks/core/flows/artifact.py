"""Case (c): one step stores a 200 MB float64 array, the next one reads it."""

import os

import numpy as np

if os.environ.get("BENCH_LIB") == "metaflow":
    from metaflow import FlowSpec, step
else:
    from matinee import FlowSpec, step

ARRAY_LEN = 200 * 1024 * 1024 // 8


class ArtifactFlow(FlowSpec):
    @step
    def start(self):
        self.array = np.random.default_rng(0).random(ARRAY_LEN)
        self.next(self.consume)

    @step
    def consume(self):
        self.total = float(self.array.sum())
        self.next(self.end)

    @step
    def end(self):
        print("sum", self.total)


if __name__ == "__main__":
    ArtifactFlow()
