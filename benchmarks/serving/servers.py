"""Server processes: start one in its own process group, wait for it, read its CPU time, stop it.

Every server's output goes to a log file in the working directory (never to a
pipe nobody reads). CPU time is user + system time from ``/proc/<pid>/stat``
summed over the server's process and all its descendants (uvicorn's
supervisor and worker processes), read before and after a load run.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Every server is pinned to one BLAS thread: two worker processes on two cores.
SERVER_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PYTHONUNBUFFERED": "1",
    "USER": "bench",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # the command name is in parentheses and may contain spaces
    return text[text.rindex(")") + 2:].split()


def descendants(pid):
    """``pid`` and every process below it, from the parent links in ``/proc``."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = int(_stat_fields(entry)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu(pid):
    """User + system CPU seconds of ``pid`` and its live descendants."""
    total = 0
    for p in descendants(pid):
        try:
            fields = _stat_fields(p)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def get_status(url, timeout=1.0):
    """HTTP status of GET ``url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


class ServerError(Exception):
    """A server did not come up; the message ends with its last log line."""


class Server:
    """One server process (and its workers) on ``127.0.0.1:port``.

    ``ready_path`` is polled until it answers 200; :attr:`ready_seconds` is
    the time from launching the command to that first 200.
    """

    def __init__(self, name, cmd, env, cwd, port, ready_path, log_dir):
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self.env = {**os.environ, **SERVER_ENV, **env}
        self.cwd = cwd
        self.port = port
        self.ready_path = ready_path
        self.log_path = Path(log_dir) / f"{name}-{port}.log"
        self.proc = None
        self.ready_seconds = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=120.0, poll=0.01):
        started = time.perf_counter()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        while time.perf_counter() - started < timeout:
            if get_status(self.url + self.ready_path, timeout=0.5) == 200:
                self.ready_seconds = time.perf_counter() - started
                return self
            if self.proc.poll() is not None:
                self.stop()
                raise ServerError(f"{self.name} exited with {self.proc.returncode}: {self.last_log_line()}")
            time.sleep(poll)
        self.stop()
        raise ServerError(f"{self.name} not ready after {timeout:.0f} s: {self.last_log_line()}")

    def last_log_line(self):
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "(no log)"
        return lines[-1][:300] if lines else "(empty log)"

    def cpu(self):
        return tree_cpu(self.proc.pid)

    def pids(self):
        return descendants(self.proc.pid)

    def stop(self, timeout=20.0):
        """SIGTERM to the server's own process group, then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def matinee_supports_workers(python=sys.executable):
    """Whether ``matinee serve`` takes ``--workers``."""
    out = subprocess.run([python, "-m", "matinee.cli.main", "serve", "--help"], capture_output=True, text=True)
    return "--workers" in out.stdout
