"""The benchmark cases. Each one takes a :class:`Bench` and returns rows."""

import shutil
import tempfile
from pathlib import Path

from flows.linear import linear_flow_source
from harness import RunError, Side, compare, disk_usage, progress
from report import Row, above, at_least_x, below, within_x

MB = 1024 * 1024  # the "200 MB" array is 200 * 1024 * 1024 bytes
ARRAY_BYTES = 200 * MB
PRIME_BYTES = 1024 * MB  # above the largest process tree of the artifact case
TRACKING_POINTS = 10_000


class Bench:
    """Settings and bookkeeping shared by the cases of one suite run."""

    def __init__(self, repeat, import_repeat, tmp_dir=None, keep=False):
        self.repeat = repeat
        self.import_repeat = import_repeat
        self.tmp_dir = tmp_dir
        self.keep = keep
        self.series = {}  # label -> {lib: Series}, for the JSON output
        self.extra = {}  # other raw measurements (store sizes, ...)
        self._root = None

    def start_case(self, name):
        """Fresh temporary root for one case's working directories."""
        self._root = Path(tempfile.mkdtemp(prefix=f"matinee-bench-{name}-", dir=self.tmp_dir))

    def end_case(self):
        if self._root and not self.keep:
            shutil.rmtree(self._root, ignore_errors=True)
        elif self._root:
            progress(f"  kept {self._root}")

    def sides(self, *libs):
        """One :class:`Side` per library, each in its own new directory."""
        return [Side(lib, self._root) for lib in libs]

    def compare(self, label, sides, action, repeat=None, **kwargs):
        """:func:`harness.compare`, remembering the samples for the JSON output."""
        result = compare(label, sides, action, repeat or self.repeat, **kwargs)
        self.series[label] = result
        return result


def stat(series, attr):
    """Median of ``attr`` over a side's samples, or its error as a string."""
    if series.error:
        return f"error: {series.error}"
    if not series.samples:
        return "error: no samples"
    return series.median(attr)


def derive(fn, *values):
    """``fn(*values)``, unless one of the values is an error string."""
    for value in values:
        if isinstance(value, str):
            return value
    return fn(*values)


def compared(case, metric, series, attr, anchor, unit="s", **kwargs):
    """A row comparing matinee's median of ``attr`` with ``anchor``'s."""
    return Row(
        case,
        metric,
        unit,
        stat(series["matinee"], attr),
        anchor,
        stat(series[anchor], attr),
        **kwargs,
    )


def run_flow(name, *args, env=None):
    """An action running ``python <name> <args>`` on a side."""
    return lambda side: side.python(name, *args, env=env)


def time_rows(case, what, series, anchor, target):
    """Wall and CPU rows for one compared command."""
    return [
        compared(case, f"{what}, wall", series, "wall", anchor, target=target),
        compared(case, f"{what}, CPU", series, "cpu", anchor, target=target),
    ]


# --- (a) linear flows and per-task overhead ---------------------------------

LINEAR_SIZES = (10, 50, 2)
BIG, SMALL = 50, 2  # per-task overhead = (time(BIG) - time(SMALL)) / (BIG - SMALL)


def case_linear(bench):
    """10-step linear flow, and per-task overhead from 50- and 2-step flows."""
    sides = bench.sides("matinee", "metaflow")
    for side in sides:
        for n in LINEAR_SIZES:
            side.add_file(f"linear{n}.py", linear_flow_source(n))
    series = {
        n: bench.compare(f"linear{n}", sides, run_flow(f"linear{n}.py", "run"))
        for n in LINEAR_SIZES
    }
    rows = time_rows("a", "10-step linear flow", series[10], "metaflow", at_least_x(10))
    for attr, label in (("wall", "wall"), ("cpu", "CPU")):
        per_task = {
            lib: derive(
                lambda big, small: (big - small) / (BIG - SMALL),
                stat(series[BIG][lib], attr),
                stat(series[SMALL][lib], attr),
            )
            for lib in ("matinee", "metaflow")
        }
        rows.append(
            Row(
                "a",
                f"per-task overhead, {label}",
                "s",
                per_task["matinee"],
                "metaflow",
                per_task["metaflow"],
                target=at_least_x(50),
            )
        )
    return rows


# --- (b) foreach --------------------------------------------------------------


def case_foreach(bench):
    """foreach over 100 items, then a join."""
    sides = bench.sides("matinee", "metaflow")
    for side in sides:
        side.add_file("foreach.py")
    series = bench.compare("foreach", sides, run_flow("foreach.py", "run"))
    return time_rows("b", "foreach 100 + join", series, "metaflow", at_least_x(30))


# --- (c) 200 MB artifact ------------------------------------------------------


def store_pass(bench, side, command):
    """Run ``command`` twice in a fresh store; return sizes and polled memory.

    The two runs double as the warm-up for the timed runs that follow.
    """
    result = {"lib": side.lib}
    try:
        for i in (1, 2):
            progress(f"  [artifact] {side.lib} store pass, run {i}/2")
            sample = command(side, poll_memory=True)
            result[f"store_after_{i}"] = disk_usage(side.store)
            result["tree_rss"] = max(result.get("tree_rss") or 0, sample.tree_rss or 0)
    except RunError as exc:
        result["error"] = f"error: {exc}"
    bench.extra.setdefault("artifact_store", []).append(result)
    return result


def store_value(result, key):
    """A value from :func:`store_pass`, or its error."""
    return result.get("error") or result[key]


def artifact_command(side, **kwargs):
    """The flow run for a library side, the plain numpy script for ``raw``.

    Memory is primed before each run so that no side pays for first touches
    of memory that another side happened not to leave warm.
    """
    if side.lib == "raw":
        return side.python("raw_array.py", prime=PRIME_BYTES, **kwargs)
    return side.python("artifact.py", "run", prime=PRIME_BYTES, **kwargs)


def case_artifact(bench):
    """200 MB numpy array as an artifact; time, memory and store size."""
    sides = bench.sides("matinee", "metaflow", "raw")
    for side in sides:
        side.add_file("raw_array.py" if side.lib == "raw" else "artifact.py")
    stores = {side.lib: store_pass(bench, side, artifact_command) for side in sides}
    series = bench.compare("artifact", sides, artifact_command, warmup=False)
    rows = []
    for anchor, target in (("metaflow", at_least_x(10)), ("raw", within_x(1.5))):
        rows += time_rows("c", f"200 MB artifact vs {anchor}", series, anchor, target)
    rows.append(
        compared(
            "c",
            "peak RSS, largest process",
            series,
            "max_rss",
            "metaflow",
            unit="bytes",
            target=below(1.5 * ARRAY_BYTES, "bytes"),
        )
    )
    rows.append(compared("c", "peak RSS, largest process", series, "max_rss", "raw", unit="bytes"))
    rows.append(
        Row(
            "c",
            "peak RSS, process tree (polled)",
            "bytes",
            store_value(stores["matinee"], "tree_rss"),
            "metaflow",
            store_value(stores["metaflow"], "tree_rss"),
        )
    )
    size = {lib: store_value(stores[lib], "store_after_2") for lib in ("matinee", "metaflow")}
    growth = {
        lib: derive(lambda a, b: b - a, store_value(stores[lib], "store_after_1"), size[lib])
        for lib in ("matinee", "metaflow")
    }
    rows.append(
        Row("c", "store size after 2 runs", "bytes", size["matinee"], "metaflow", size["metaflow"])
    )
    rows.append(
        Row(
            "c",
            "store growth, 2nd identical run",
            "bytes",
            growth["matinee"],
            "metaflow",
            growth["metaflow"],
            target=below(MB, "bytes"),
        )
    )
    return rows


# --- (d) resume ---------------------------------------------------------------


def fail_then_resume(side):
    """Run the flow failing at step 6 (untimed), then measure ``resume``."""
    side.python("resume10.py", "run", env={"BENCH_FAIL": "1"}, expect_failure=True)
    return side.python("resume10.py", "resume")


def case_resume(bench):
    """Resume a 10-step flow that failed at step 6."""
    sides = bench.sides("matinee", "metaflow")
    for side in sides:
        side.add_file("resume10.py", linear_flow_source(10, fail_at=6, class_name="ResumeFlow"))
    series = bench.compare("resume", sides, fail_then_resume)
    return time_rows("d", "resume at step 6 of 10", series, "metaflow", at_least_x(5))


# --- (e) metric tracking --------------------------------------------------------


def tracking(mode, points):
    """An action running the tracking script in ``mode``."""
    return lambda side: side.python("tracking.py", mode, str(points))


def reported(field, per):
    """Read a timing the tracking script printed, scaled by ``per``."""
    return lambda sample: per(sample.json_line()[field], sample.json_line()["points"])


def ms_per_call(seconds, points):
    return seconds / points * 1000


def points_per_s(seconds, points):
    return points / seconds


def case_tracking(bench):
    """10,000 metric points, one call each and batched."""
    sides = bench.sides("matinee", "mlflow")
    for side in sides:
        side.add_file("tracking.py")
    rows = []
    for mode, what in (
        ("per_call", "log_metric"),
        ("dict", "log_metrics(dict)"),
        ("batch", "log_batch"),
    ):
        series = bench.compare(
            f"tracking-{mode}",
            sides,
            tracking(mode, TRACKING_POINTS),
            warmup=tracking(mode, 100),
        )
        if mode == "per_call":
            rows.append(
                compared(
                    "e",
                    f"{what}, per call (wall)",
                    series,
                    reported("wall", ms_per_call),
                    "mlflow",
                    unit="ms",
                    target=at_least_x(10),
                )
            )
            rows.append(
                compared(
                    "e",
                    f"{what}, per call (CPU)",
                    series,
                    reported("cpu", ms_per_call),
                    "mlflow",
                    unit="ms",
                )
            )
        else:
            rows.append(
                compared(
                    "e",
                    f"{what}, throughput",
                    series,
                    reported("wall", points_per_s),
                    "mlflow",
                    unit="points/s",
                    higher_is_better=True,
                    target=above(100_000, "points/s"),
                )
            )
    return rows


# --- import time --------------------------------------------------------------

IMPORTS = {
    "bare": "pass",
    "matinee": "import matinee",
    "metaflow": "import metaflow",
    "mlflow": "import mlflow",
}


def case_import(bench):
    """``import X`` time over a bare interpreter."""
    sides = bench.sides(*IMPORTS)
    series = bench.compare(
        "import",
        sides,
        lambda side: side.python("-c", IMPORTS[side.lib]),
        repeat=bench.import_repeat,
    )
    bare = stat(series["bare"], "wall")
    over = {
        lib: derive(lambda t, b: t - b, stat(series[lib], "wall"), bare)
        for lib in ("matinee", "metaflow", "mlflow")
    }
    return [
        Row(
            "import",
            "import time over bare python",
            "s",
            over["matinee"],
            "metaflow",
            over["metaflow"],
            target=below(0.1, "s"),
        ),
        Row(
            "import", "import time over bare python", "s", over["matinee"], "mlflow", over["mlflow"]
        ),
        Row("import", "bare python startup", "s", bare),
    ]


CASES = {
    # name: (issue letter, function)
    "linear": ("a", case_linear),
    "foreach": ("b", case_foreach),
    "artifact": ("c", case_artifact),
    "resume": ("d", case_resume),
    "tracking": ("e", case_tracking),
    "import": ("import", case_import),
}


def describe_series(series_by_label):
    """All samples as plain data, for the JSON output."""
    return {
        label: {
            lib: {"error": s.error, "samples": [x.as_dict() for x in s.samples]}
            for lib, s in by_lib.items()
        }
        for label, by_lib in series_by_label.items()
    }
