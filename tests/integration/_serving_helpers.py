"""Helpers for tests that run ``matinee serve`` as a real process and load it over real HTTP.

Everything here talks to 127.0.0.1 only: servers listen there on a free port and
clients are built from :attr:`ServerProcess.url`.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def write_deployment(path: Path, *, recs: str | None = None, artwork: str | None = None, **fields: Any) -> Path:
    """Write a deployment TOML file: top-level ``fields`` and ``[recs]`` / ``[artwork]`` tables."""
    lines = [f"{name} = {_toml_value(value)}" for name, value in fields.items()]
    for table, model in (("recs", recs), ("artwork", artwork)):
        if model is not None:
            lines += ["", f"[{table}]", f"model = {_toml_value(model)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


class ServerProcess:
    """``python -m matinee.cli.main serve ARGS --port P`` with its own MATINEE_HOME.

    Output goes to files (never a pipe a busy server could fill up). Use as a
    context manager: a server still running on exit is killed.
    """

    def __init__(self, home: Path, args: list[str], *, name: str = "server", log_level: str = "warning") -> None:
        self.home = Path(home)
        self.args = list(args)
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = self.home.parent / f"{name}-{self.port}.log"
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 30.0) -> ServerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MATINEE_HOME": str(self.home)}
        command = [sys.executable, "-m", "matinee.cli.main", "serve", *self.args,
                   "--host", HOST, "--port", str(self.port), "--log-level", self.log_level]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        self.wait_ready(ready_timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready after {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def kill(self) -> int:
        """SIGKILL, then reap; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=30)

    def terminate(self, timeout: float = 15.0) -> tuple[int | None, float]:
        """SIGTERM; returns (exit code or None if still running after ``timeout``, seconds waited)."""
        assert self.process is not None
        start = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - start

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def artwork_body(rng: random.Random, user: Any = None, *, titles: int = 2, variants: int = 3, dims: int = 2,
                 context: int = 2) -> dict[str, Any]:
    """A valid /artwork request body with seeded contents."""
    return {
        "user_id": user if user is not None else f"m{rng.randrange(10_000)}",
        "context": [round(rng.random(), 6) for _ in range(context)],
        "titles": [
            {"title_id": f"t{i}",
             "variants": [{"id": f"t{i}v{j}", "features": [round(rng.random(), 6) for _ in range(dims)]}
                          for j in range(variants)]}
            for i in range(titles)
        ],
    }


@dataclass
class Reply:
    status: int
    seconds: float
    headers: dict[str, str]
    text: str


class Load(threading.Thread):
    """Concurrent POSTs to one endpoint from a background thread, recording every reply.

    ``acked`` holds the decision ids of every 200 /artwork reply: the server
    answered them, so (with strict durability) they were logged first.
    Workers stop on ``stop()``, after ``max_requests`` in all, after
    ``max_seconds``, or (each) on a transport error when ``stop_on_error``.
    """

    def __init__(self, url: str, make_body: Callable[[random.Random], Any], *, path: str = "/artwork",
                 concurrency: int = 8, max_requests: int = 5_000, max_seconds: float = 20.0, seed: int = 0,
                 stop_on_error: bool = True) -> None:
        super().__init__(daemon=True)
        assert url.startswith(f"http://{HOST}:"), url
        self.url = url
        self.make_body = make_body
        self.path = path
        self.concurrency = concurrency
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.seed = seed
        self.stop_on_error = stop_on_error
        self.acked: list[str] = []
        self.replies: list[Reply] = []
        self.transport_errors: list[str] = []
        self.sent = 0
        self._stop_event = threading.Event()
        self.crash: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by join_checked
            self.crash = exc

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(base_url=self.url, timeout=30, limits=limits) as client:
            await asyncio.gather(*(self._worker(client, i) for i in range(self.concurrency)))

    async def _worker(self, client: httpx.AsyncClient, index: int) -> None:
        rng = random.Random(self.seed * 1_000 + index)
        deadline = time.monotonic() + self.max_seconds
        while not self._stop_event.is_set() and self.sent < self.max_requests and time.monotonic() < deadline:
            body = self.make_body(rng)
            self.sent += 1
            start = time.perf_counter()
            try:
                response = await client.post(self.path, json=body)
            except httpx.TransportError as exc:
                self.transport_errors.append(repr(exc))
                if self.stop_on_error:
                    return
                await asyncio.sleep(0.01)
                continue
            reply = Reply(response.status_code, time.perf_counter() - start, dict(response.headers), response.text)
            self.replies.append(reply)
            if response.status_code == 200 and self.path == "/artwork":
                self.acked.extend(choice["decision_id"] for choice in response.json()["choices"])

    def stop(self) -> None:
        self._stop_event.set()

    def wait_for(self, condition: Callable[[Load], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self):
            if not self.is_alive() or time.monotonic() > deadline:
                raise AssertionError(f"load condition not met: sent {self.sent}, acked {len(self.acked)}, "
                                     f"statuses {self.statuses()}, errors {self.transport_errors[:3]}, "
                                     f"crash {self.crash!r}")
            time.sleep(0.01)

    def join_checked(self, timeout: float = 30.0) -> Load:
        self.join(timeout)
        assert not self.is_alive(), "load thread did not stop"
        if self.crash is not None:
            raise self.crash
        return self

    def statuses(self) -> Counter[int]:
        return Counter(reply.status for reply in self.replies)


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a SQLite file ("ok" when sound)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(row[0]) for row in rows)
