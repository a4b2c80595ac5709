"""The README's quickstart flow: square some numbers in parallel and add them up."""

from matinee import FlowSpec, Parameter, current, step


class QuickstartFlow(FlowSpec):
    """Square some numbers in parallel and add them up."""

    n = Parameter("n", default=5, help="how many numbers")

    @step
    def start(self):
        self.numbers = list(range(self.n))
        self.next(self.square, foreach="numbers")

    @step
    def square(self):
        self.squared = self.input**2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.squared for i in inputs)
        current.log_metric("total", self.total)
        self.next(self.end)

    @step
    def end(self):
        print("total", self.total)


if __name__ == "__main__":
    QuickstartFlow()
