"""The benchmark's flow: a foreach over ``n`` tasks, each busy on the CPU for ``seconds`` of CPU time."""

import time

from matinee import FlowSpec, Parameter, step


def burn(seconds: float) -> int:
    """Spin on the CPU until this process has used ``seconds`` of CPU time."""
    spins = 0
    end = time.process_time() + seconds
    while time.process_time() < end:
        for _ in range(1000):
            spins += 1
    return spins


class CpuFlow(FlowSpec):
    """Fan out ``n`` CPU-bound tasks and count their work."""

    n = Parameter("n", default=100, help="foreach tasks")
    seconds = Parameter("seconds", default=0.5, help="CPU seconds per task (0: a trivial task)")

    @step
    def start(self):
        self.items = list(range(self.n))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.spins = burn(self.seconds) if self.seconds > 0 else 0
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.spins for i in inputs)
        self.tasks = len(list(inputs))
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CpuFlow()
