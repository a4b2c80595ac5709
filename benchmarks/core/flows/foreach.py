"""Case (b): fan out over 100 items with ``foreach``, then join."""

import os

if os.environ.get("BENCH_LIB") == "metaflow":
    from metaflow import FlowSpec, step
else:
    from matinee import FlowSpec, step

ITEMS = 100


class ForeachFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(ITEMS))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.out = self.input * 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(inp.out for inp in inputs)
        self.next(self.end)

    @step
    def end(self):
        assert self.total == ITEMS * (ITEMS - 1), self.total


if __name__ == "__main__":
    ForeachFlow()
