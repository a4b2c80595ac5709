"""A real ``matinee server`` process on 127.0.0.1 for tests, and tokens for it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


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


@contextmanager
def matinee_server(env: Mapping[str, str], *args: str, timeout: float = 30) -> Iterator[str]:
    """Start ``matinee server --port 0`` and yield its URL once it answers; stop it afterwards."""
    proc = subprocess.Popen([*matinee_command(), "server", "--host", "127.0.0.1", "--port", "0", *args],
                            env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline() if proc.stdout else ""),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    try:
        if not lines or "serving http://" not in lines[0]:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"matinee server did not start: {lines} {err[-3000:]}")
        url = lines[0].split("serving ", 1)[1].split()[0]
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url + "/api/v1/health", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.02)
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
