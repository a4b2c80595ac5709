"""Result rows, targets, and the text and markdown tables of the serving benchmark."""

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

LIBRARIES = ("matinee", "mlflow", "uvicorn", "starlette", "fastapi", "numpy", "scipy")


@dataclass
class Target:
    label: str
    check: Callable[["Row"], bool | None]


def at_least(limit, unit):
    return Target(f">= {fmt(limit, unit)}", lambda row: row.matinee >= limit)


def below(limit, unit):
    return Target(f"< {fmt(limit, unit)}", lambda row: row.matinee < limit)


def equals(value, unit):
    return Target(f"= {fmt(value, unit)}", lambda row: row.matinee == value)


def ratio_at_least(factor, text=None):
    """matinee at least ``factor`` times as good as the anchor (``advantage >= factor``)."""
    return Target(text or f">= {factor:g}x",
                  lambda row: None if row.advantage is None else row.advantage >= factor)


@dataclass
class Row:
    """One figure, optionally against an anchor. A ``str`` value is an error message."""

    case: str
    metric: str
    unit: str  # "req/s", "ms", "s", "events/s", "count"
    matinee: float | str
    anchor_lib: str | None = None
    anchor: float | str | None = None
    higher_is_better: bool = False
    target: Target | None = None
    note: str = ""

    def _numbers(self):
        return isinstance(self.matinee, float | int) and isinstance(self.anchor, float | int)

    @property
    def advantage(self):
        """How many times better matinee is than the anchor (> 1: matinee wins)."""
        if not self._numbers() or self.matinee <= 0 or self.anchor <= 0:
            return None
        return self.matinee / self.anchor if self.higher_is_better else self.anchor / self.matinee

    @property
    def met(self):
        if self.target is None or isinstance(self.matinee, str) or self.matinee is None:
            return None
        return self.target.check(self)

    def as_dict(self):
        return {"case": self.case, "metric": self.metric, "unit": self.unit, "matinee": self.matinee,
                "anchor_lib": self.anchor_lib, "anchor": self.anchor, "advantage": self.advantage,
                "target": self.target.label if self.target else None, "met": self.met, "note": self.note}


def fmt(value, unit):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "ms":
        return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit in ("req/s", "events/s"):
        return f"{value:,.0f}/s"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:g} {unit}"


HEADERS = ["case", "metric", "matinee", "vs", "anchor", "advantage", "target", "met"]


def row_cells(row):
    adv = row.advantage
    met = {True: "yes", False: "NO", None: ""}[row.met]
    matinee = fmt(row.matinee, row.unit)
    if isinstance(row.matinee, str) and len(matinee) > 60:
        matinee = matinee[:57] + "..."
    return [row.case, row.metric, matinee, row.anchor_lib or "",
            fmt(row.anchor, row.unit) if row.anchor_lib else "",
            f"{adv:.2f}x" if adv is not None else "", row.target.label if row.target else "", met]


def text_table(rows):
    lines = [HEADERS, *(row_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows):
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in row_cells(row)) + " |")
    return "\n".join(out)


def version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def load_average():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _first(path, prefix):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def wrk_version():
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0].split(" [")[0] if text else "wrk"


def environment():
    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    mem = _first("/proc/meminfo", "MemTotal")
    try:
        mem = f"{int(mem.split()[0]) / 1024 / 1024:.1f} GiB"
    except (ValueError, IndexError):
        pass
    return {
        "date": date,
        "nproc": len(os.sched_getaffinity(0)),
        "memory": mem,
        "cpu": _first("/proc/cpuinfo", "model name"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "versions": {name: version(name) for name in LIBRARIES},
        "httptools": version("httptools"),
        "uvloop": version("uvloop"),
        "wrk": wrk_version(),
        "load_at_start": load_average(),
    }


def markdown_section(rows, env, settings, notes=()):
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    lines = [
        f"## Serving (issue 5) — {env['date']}",
        "",
        f"- Machine: {env['nproc']} CPUs (`nproc`), {env['memory']} memory, {env['cpu']}, {env['platform']}; "
        "shared with other sessions",
        f"- Python {env['python']}; {versions}; uvicorn's HTTP parser: "
        f"{'httptools ' + env['httptools'] if env['httptools'] != 'not installed' else 'h11 (httptools not installed)'}"
        f", event loop: {'uvloop' if env['uvloop'] != 'not installed' else 'asyncio'}",
        f"- Load average (1, 5, 15 min) at start: {env['load_at_start']}; at end: {env.get('load_at_end', 'unknown')}",
        f"- Command: `{settings['command']}`; total {settings['total_minutes']:.1f} min",
        f"- Servers: {settings['workers']} worker processes each, OPENBLAS_NUM_THREADS=1, uvicorn at log level info "
        f"(access log on). **As shipped**: matinee as {settings['matinee_launch']}, MLflow as `mlflow models serve "
        f"--env-manager local -w {settings['workers']}`, the bare app under `uvicorn --factory` with the same "
        "settings. **TCP_NODELAY**: the same three with uvicorn's h11 protocol setting TCP_NODELAY on each "
        "connection (`--http nodelay:NoDelayH11Protocol`; matinee's app through `uvicorn --factory "
        "matinee_app:app`, MLflow's through `UVICORN_HTTP`); see the notes",
        f"- Models: {settings['models_line']}",
        f"- Load: {settings['generator']} on 127.0.0.1, closed loop, keep-alive, sharing the 2 cores with the "
        f"servers; {settings['seconds']:g} s per measurement, medians of {settings['repeat']} runs per side "
        "(sides alternating, order flipped every round) after an untimed warm-up. CPU = user + sys of the server's "
        "process tree from /proc. advantage = how many times better matinee is than the anchor. What each case "
        "measures: benchmarks/README.md (Serving).",
        "",
        markdown_table(rows),
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
