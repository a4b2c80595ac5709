"""Measuring commands: one subprocess per measurement, alternating sides.

Every measurement is a fresh ``python ...`` subprocess. Wall time is taken
around the whole command; CPU time (user + sys) and peak memory come from
``os.wait4``, whose resource usage covers the process and every descendant it
waited for (Metaflow's task processes included).
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

FLOWS_DIR = Path(__file__).resolve().parent / "flows"

# Environment shared by every subprocess: no network, no telemetry.
COMMON_ENV = {
    "USER": "bench",
    "USERNAME": "bench",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
}


class RunError(Exception):
    """A measured command failed; the message is its last line of stderr."""


@dataclass
class Sample:
    """One measured command."""

    wall: float  # seconds, whole command
    cpu: float  # seconds, user + sys of the process tree
    max_rss: int  # bytes, largest resident set of any single process in the tree
    tree_rss: int | None = None  # bytes, peak of the summed RSS of the tree (polled)
    stdout: str = ""

    def json_line(self):
        """The last stdout line parsed as JSON (the tracking script prints one)."""
        return json.loads(self.stdout.strip().splitlines()[-1])

    def as_dict(self):
        """Plain data for the JSON output, with what the command reported if any."""
        data = {"wall": self.wall, "cpu": self.cpu, "max_rss": self.max_rss}
        try:
            data["reported"] = self.json_line()
        except (ValueError, IndexError):
            pass
        return data


def poll_tree_rss(pid, stop, interval=0.01):
    """Poll the summed RSS of ``pid`` and its descendants until ``stop`` is set.

    Returns a one-element list holding the peak seen (updated in place), or
    None when psutil is not installed.
    """
    try:
        import psutil
    except ImportError:
        return None
    peak = [0]

    def loop():
        try:
            root = psutil.Process(pid)
        except psutil.Error:
            return
        while not stop.is_set():
            total = 0
            try:
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            peak[0] = max(peak[0], total)
            stop.wait(interval)

    threading.Thread(target=loop, daemon=True).start()
    return peak


def prime_memory(nbytes):
    """Touch ``nbytes`` of fresh memory in a throwaway process, untimed.

    On a virtual machine that hands idle memory back to its host, the first
    touch of a page costs far more than on bare metal, and how much depends on
    what ran just before. Priming right before a memory-heavy measurement puts
    every side in the same state: memory recently used, as on a busy machine.
    """
    subprocess.run([sys.executable, "-c", f"b'x' * {int(nbytes)}"], check=True)


def last_error_line(text):
    """The most useful single line of a failed command's stderr."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output on stderr)"


def measure(cmd, env, cwd, expect_failure=False, poll_memory=False, prime=0):
    """Run ``cmd`` in ``cwd`` with ``env`` and return its :class:`Sample`.

    ``poll_memory`` also samples the summed RSS of the process tree; ``prime``
    first touches that many bytes of memory (see :func:`prime_memory`).
    Raises :class:`RunError` when the command fails (or, with
    ``expect_failure``, when it unexpectedly succeeds).
    """
    if prime:
        prime_memory(prime)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        stop = threading.Event()
        peak = poll_tree_rss(proc.pid, stop) if poll_memory else None
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        stop.set()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    failed = proc.returncode != 0
    if failed and not expect_failure:
        raise RunError(f"exit {proc.returncode}: {last_error_line(stderr)}")
    if expect_failure and not failed:
        raise RunError("command was expected to fail but succeeded")
    return Sample(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        max_rss=usage.ru_maxrss * 1024,
        tree_rss=peak[0] if peak else None,
        stdout=stdout,
    )


def disk_usage(path):
    """Bytes allocated on disk under ``path``, like ``du -s`` (hard links once)."""
    path = Path(path)
    if not path.exists():
        return 0
    seen, total = set(), 0
    for entry in [path, *path.rglob("*")]:
        st = entry.lstat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


class Side:
    """One library under test, with its own fresh working directory.

    ``lib`` is the value of ``BENCH_LIB`` the scripts switch on (``matinee``,
    ``metaflow``, ``mlflow`` or ``raw``). The working directory holds the
    library's store: ``.metaflow`` for Metaflow, ``matinee_home`` (as
    ``MATINEE_HOME``) for matinee, ``mlflow.db`` for MLflow.
    """

    def __init__(self, lib, root):
        self.lib = lib
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{lib}-", dir=root))
        self.env = {
            **os.environ,
            **COMMON_ENV,
            "BENCH_LIB": lib,
            "MATINEE_HOME": str(self.workdir / "matinee_home"),
            "METAFLOW_HOME": str(self.workdir / "metaflow_home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.workdir / 'mlflow.db'}",
        }

    @property
    def store(self):
        """Where this library keeps its data inside the working directory."""
        return {
            "matinee": self.workdir / "matinee_home",
            "metaflow": self.workdir / ".metaflow",
            "mlflow": self.workdir / "mlflow.db",
        }.get(self.lib, self.workdir)

    def add_file(self, name, source=None):
        """Copy ``flows/<name>`` (or write ``source``) into the working directory."""
        target = self.workdir / name
        if source is None:
            shutil.copy(FLOWS_DIR / name, target)
        else:
            target.write_text(source)
        return name

    def python(self, *args, env=None, **kwargs):
        """Measure ``python ARGS`` in the working directory (see :func:`measure`)."""
        return measure([sys.executable, *args], {**self.env, **(env or {})}, self.workdir, **kwargs)


@dataclass
class Series:
    """Samples of one side of a comparison, or the error that stopped it."""

    lib: str
    samples: list = field(default_factory=list)
    error: str | None = None

    def median(self, attr):
        """Median of a :class:`Sample` attribute (or of a callable on samples)."""
        get = attr if callable(attr) else (lambda s: getattr(s, attr))
        return statistics.median(get(s) for s in self.samples)


def progress(message):
    """Progress goes to stderr so stdout stays clean for tables and JSON."""
    print(message, file=sys.stderr, flush=True)


def compare(label, sides, action, repeat, warmup=True):
    """Run ``action(side)`` ``repeat`` times per side, alternating the order.

    ``action`` returns a :class:`Sample`. Each side first runs one untimed
    warm-up (``warmup=True`` means the action itself; a callable is used
    instead; ``False`` skips it). A side whose run fails is recorded with its
    error and left out of the remaining rounds, so the other sides go on.
    """
    series = {side.lib: Series(side.lib) for side in sides}

    def attempt(side, fn, what):
        try:
            return fn(side)
        except RunError as exc:
            series[side.lib].error = str(exc)
            progress(f"  [{label}] {side.lib} {what}: error: {exc}")
            return None

    if warmup:
        warm = action if warmup is True else warmup
        for side in sides:
            progress(f"  [{label}] {side.lib} warm-up")
            attempt(side, warm, "warm-up")
    for i in range(repeat):
        order = sides if i % 2 == 0 else sides[::-1]
        for side in order:
            if series[side.lib].error:
                continue
            sample = attempt(side, action, f"run {i + 1}/{repeat}")
            if sample is not None:
                series[side.lib].samples.append(sample)
                progress(
                    f"  [{label}] {side.lib} run {i + 1}/{repeat}: "
                    f"wall {sample.wall:.3f} s, cpu {sample.cpu:.3f} s"
                )
    return series
