"""Result rows, targets, and their rendering as a text table or markdown."""

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

LIBRARIES = ("matinee", "metaflow", "mlflow", "numpy")


@dataclass
class Target:
    """A goal from the project issue, checked against a :class:`Row`."""

    label: str
    check: Callable[["Row"], bool | None]  # None: cannot be checked


def relative(row, test):
    """Apply ``test`` to the row's advantage; None when there is none."""
    return None if row.advantage is None else test(row.advantage)


def at_least_x(factor):
    """matinee at least ``factor`` times better than the anchor."""
    return Target(f">= {factor}x", lambda row: relative(row, lambda adv: adv >= factor))


def within_x(factor):
    """matinee no more than ``factor`` times worse than the anchor."""
    return Target(f"<= {factor}x of it", lambda row: relative(row, lambda adv: adv >= 1 / factor))


def below(limit, unit):
    """matinee's own value under ``limit``."""
    return Target(f"< {fmt(limit, unit)}", lambda row: row.matinee < limit)


def above(limit, unit):
    """matinee's own value at least ``limit``."""
    return Target(f">= {fmt(limit, unit)}", lambda row: row.matinee >= limit)


@dataclass
class Row:
    """One compared number. A value that is a ``str`` is an error message."""

    case: str
    metric: str
    unit: str  # "s", "ms", "bytes" or "points/s"
    matinee: float | str
    anchor_lib: str | None = None
    anchor: float | str | None = None
    higher_is_better: bool = False
    target: Target | None = None

    def _numbers(self):
        return isinstance(self.matinee, float | int) and isinstance(self.anchor, float | int)

    @property
    def advantage(self):
        """How many times better matinee is than the anchor (> 1: matinee wins)."""
        if not self._numbers() or self.matinee <= 0 or self.anchor <= 0:
            return None  # no meaningful ratio (e.g. an overhead lost in noise)
        ratio = self.anchor / self.matinee
        return 1 / ratio if self.higher_is_better else ratio

    @property
    def met(self):
        """True/False when the target could be checked, else None."""
        if self.target is None or isinstance(self.matinee, str):
            return None
        return self.target.check(self)

    def as_dict(self):
        return {
            "case": self.case,
            "metric": self.metric,
            "unit": self.unit,
            "matinee": self.matinee,
            "anchor_lib": self.anchor_lib,
            "anchor": self.anchor,
            "advantage": self.advantage,
            "target": self.target.label if self.target else None,
            "met": self.met,
        }


def fmt(value, unit):
    """Human-readable value; error strings pass through."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "s":
        return fmt(value * 1000, "ms") if abs(value) < 1 else f"{value:.2f} s"
    if unit == "ms":
        if abs(value) < 0.1:
            return f"{value * 1000:.1f} us"
        return f"{value:.2f} ms" if abs(value) < 10 else f"{value:.1f} ms"
    if unit == "bytes":
        if abs(value) < 1024 * 1024:
            return f"{value / 1024:.1f} KiB"
        return f"{value / 1024 / 1024:.1f} MiB"
    if unit == "points/s":
        return f"{value:,.0f}/s"
    return f"{value:g} {unit}"


def cell(value, unit, width=48):
    """A table cell: the formatted value, errors shortened."""
    text = fmt(value, unit)
    if isinstance(value, str) and len(text) > width:
        text = text[: width - 3] + "..."
    return text


def row_cells(row):
    """The cells of one table line."""
    adv = row.advantage
    met = {True: "yes", False: "NO", None: ""}[row.met]
    return [
        row.case,
        row.metric,
        cell(row.matinee, row.unit),
        row.anchor_lib or "",
        cell(row.anchor, row.unit) if row.anchor_lib else "",
        f"{adv:.2f}x" if adv is not None else "",
        row.target.label if row.target else "",
        met,
    ]


HEADERS = ["case", "metric", "matinee", "vs", "anchor", "advantage", "target", "met"]


def errors(rows):
    """Distinct error messages appearing in ``rows``, in order."""
    found = []
    for row in rows:
        for lib, value in (("matinee", row.matinee), (row.anchor_lib, row.anchor)):
            entry = f"{lib} ({row.case}): {value}"
            if isinstance(value, str) and entry not in found:
                found.append(entry)
    return found


def text_table(rows):
    """A plain aligned table, followed by the full error messages."""
    lines = [HEADERS, *(row_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    if errors(rows):
        out += ["", "errors:", *(f"  {e}" for e in errors(rows))]
    return "\n".join(out)


def markdown_table(rows):
    """The same table in markdown."""
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in row_cells(row)) + " |")
    return "\n".join(out)


def version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def memory_total():
    """Total memory from /proc/meminfo, as text."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average():
    """The 1-, 5- and 15-minute load averages, as text: the machine is shared."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def environment():
    """Date, machine and versions, recorded with every result."""
    try:
        date = subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
    except OSError:
        date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return {
        "date": date,
        "nproc": len(os.sched_getaffinity(0)),
        "memory": memory_total(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: version(name) for name in LIBRARIES},
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "load_at_start": load_average(),
    }


def markdown_section(rows, env, settings):
    """The RESULTS.md section for one run of the suite."""
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    openblas = env["openblas_coretype"]
    lines = [
        f"## {env['date']}",
        "",
        f"- Machine: {env['nproc']} CPUs (`nproc`), {env['memory']} memory, "
        f"{env['cpu']}, {env['platform']}",
        f"- Python {env['python']}; {versions}"
        + (f"; inherited OPENBLAS_CORETYPE={openblas}" if openblas else ""),
        f"- Load average (1, 5, 15 min) at start: {env['load_at_start']}; "
        f"at end: {env.get('load_at_end', 'unknown')}",
        f"- Command: `{settings['command']}`",
        f"- Medians of {settings['repeat']} runs per side (import times: "
        f"{settings['import_repeat']}), libraries alternating, after one untimed "
        "warm-up run each. CPU = user + sys of the whole process tree. "
        "advantage = how many times better matinee is than the anchor. "
        "What each case measures: benchmarks/README.md.",
        "",
        markdown_table(rows),
    ]
    if errors(rows):
        lines += ["", "Errors:", "", *(f"- {e}" for e in errors(rows))]
    return "\n".join(lines) + "\n"


def command_line():
    return " ".join(["python", *sys.argv])
