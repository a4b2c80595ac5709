"""A real ``matinee server`` (or ``matinee ui``) process on 127.0.0.1 for tests, and tokens for it.

:class:`WebServer` starts it with ``--port 0``, reads the URL from its first line
(``matinee server: serving http://127.0.0.1:PORT (...)``), waits until it answers,
and keeps its stderr in a log file; :func:`matinee_server` is the same as a
context manager over an environment that yields the URL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def matinee_command() -> list[str]:
    exe = shutil.which("matinee")
    return [exe] if exe else [sys.executable, "-c", "from matinee.cli.main import main; main()"]


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a server (or a `matinee tokens` call) over the store in ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATINEE_")}
    env.update(MATINEE_HOME=str(home), MATINEE_USER="tester", **extra)
    return env


def create_token(env: Mapping[str, str], name: str, role: str, *extra: str) -> str:
    done = subprocess.run([*matinee_command(), "tokens", "create", "--name", name, "--role", role, *extra,
                           "--json"], env=dict(env), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["token"])


class WebServer:
    """``matinee COMMAND --host 127.0.0.1 --port 0 ARGS`` in ``env``; stopped with SIGTERM."""

    def __init__(self, env: Mapping[str, str], *args: str, command: str = "server",
                 log_path: Path | None = None) -> None:
        self.env = dict(env)
        self.args = list(args)
        self.command = command
        self.url = ""
        self.first_line = ""
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="matinee-server-", suffix=".log")[1])
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> WebServer:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [*matinee_command(), self.command, "--host", "127.0.0.1", "--port", "0", *self.args],
                env=self.env, stdout=subprocess.PIPE, stderr=log, text=True)
        stdout = self.process.stdout
        assert stdout is not None
        lines: list[str] = []

        def drain() -> None:  # the first line is the URL; the rest is read so the pipe never fills
            for line in stdout:
                if not lines:
                    lines.append(line)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while not lines and time.monotonic() < deadline and self.process.poll() is None:
            time.sleep(0.01)
        prefix = f"matinee {self.command}: serving http://127.0.0.1:"
        if not lines or not lines[0].startswith(prefix):
            self.stop()
            raise AssertionError(f"unexpected first line {lines[:1]!r}; log:\n{self.log()[-3000:]}")
        self.first_line = lines[0].strip()
        self.url = self.first_line.split()[3]
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"server at {self.url} never answered; log:\n{self.log()[-3000:]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


@contextmanager
def matinee_server(env: Mapping[str, str], *args: str, timeout: float = 30) -> Iterator[str]:
    """Start ``matinee server --port 0`` in ``env`` and yield its URL once it answers; stop it afterwards."""
    server = WebServer(env, *args).start(timeout)
    try:
        yield server.url
    finally:
        server.stop()
