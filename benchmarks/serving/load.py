"""Closed-loop load on 127.0.0.1: N keep-alive connections, each sending its next request
as soon as the previous answer is in.

Two generators, the same protocol:

- ``wrk`` (C, one thread), when it is installed: the default for throughput and
  latency. A Lua script cycles through the pre-built request bodies and prints
  the totals and latency percentiles as one JSON line.
- this file's asyncio generator (``python load.py ...``), run in its own
  process: the fallback when ``wrk`` is missing, and the hot-swap case, which
  needs every response's model version. Requests are pre-encoded HTTP/1.1
  bytes; each connection parses the status line and ``content-length`` and
  reads the body.

Either way the generator shares the machine's cores with the servers; its own
CPU time is reported next to theirs.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_VERSION = re.compile(rb'"version":(\d+)')

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {
%(bodies)s
}
local n = #bodies
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, "%(path)s", nil, bodies[(i %% n) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"max_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk_path():
    return shutil.which("wrk")


def write_wrk_script(bodies, path, target):
    """A Lua script for ``wrk -s`` that POSTs ``bodies`` in turn to ``path``."""
    for body in bodies:
        if "]==]" in body:
            raise ValueError("a body contains the Lua long-string terminator")
    text = WRK_SCRIPT % {"bodies": ",\n".join(f"[==[{b}]==]" for b in bodies), "path": path}
    Path(target).write_text(text)
    return target


def _result(requests, seconds, p50, p90, p99, errors, generator_cpu, extra=None):
    return {"requests": requests, "seconds": seconds, "rps": requests / seconds if seconds else 0.0,
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "errors": errors, "generator_cpu": generator_cpu,
            **(extra or {})}


def run_wrk(url, script, connections, seconds, threads=1, timeout=5):
    """Run wrk against ``url``; latencies in ms, errors = socket errors + non-2xx/3xx + timeouts."""
    cmd = [wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout}s",
           "-s", str(script), url]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        err.seek(0)
        text, errtext = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"wrk failed: {errtext.strip() or text.strip()}")
    data = json.loads(text.strip().splitlines()[-1])
    errors = data["connect"] + data["read"] + data["write"] + data["status"] + data["timeout"]
    return _result(data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1000,
                   data["p90_us"] / 1000, data["p99_us"] / 1000, errors, usage.ru_utime + usage.ru_stime,
                   {"generator": "wrk", "error_kinds": {k: data[k] for k in
                                                        ("connect", "read", "write", "status", "timeout")}})


# -- the asyncio generator ----------------------------------------------------------------------

def encode_requests(bodies, path, port):
    return [
        (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
         f"Content-Length: {len(body.encode())}\r\n\r\n").encode() + body.encode()
        for body in bodies
    ]


async def _connection(port, requests, offset, deadline, latencies, stats):
    reader = writer = None
    i = offset
    last_version = None
    while time.perf_counter() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
            match = _VERSION.search(body)
            if match:
                version = int(match.group(1))
                stats["versions"][version] = stats["versions"].get(version, 0) + 1
                if last_version is not None and version != last_version:
                    stats["switches"] += 1
                last_version = version
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            stats["socket_errors"] += 1
            stats["last_error"] = f"{type(exc).__name__}: {exc}"
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def _drive(port, requests, connections, seconds):
    latencies = []
    stats = {"statuses": {}, "versions": {}, "switches": 0, "socket_errors": 0, "last_error": None}
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_connection(port, requests, c * 7919, deadline, latencies, stats)
                           for c in range(connections)))
    return latencies, stats, time.perf_counter() - started


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def drive(port, path, bodies, connections, seconds):
    """Run the asyncio generator in this process; returns the result dict."""
    requests = encode_requests(bodies, path, port)
    cpu0 = time.process_time()
    latencies, stats, elapsed = asyncio.run(_drive(port, requests, connections, seconds))
    cpu = time.process_time() - cpu0
    latencies.sort()
    ok = sum(n for status, n in stats["statuses"].items() if 200 <= status < 400)
    failed = sum(n for status, n in stats["statuses"].items() if not 200 <= status < 400)
    ms = [x * 1000 for x in latencies]
    return _result(ok + failed, elapsed, percentile(ms, 50), percentile(ms, 90), percentile(ms, 99),
                   failed + stats["socket_errors"], cpu,
                   {"generator": "asyncio", "statuses": stats["statuses"], "versions": stats["versions"],
                    "switches": stats["switches"], "socket_errors": stats["socket_errors"],
                    "last_error": stats["last_error"]})


def run_python(url, path, bodies, connections, seconds):
    """The asyncio generator in a child process (so it never shares the caller's interpreter)."""
    port = int(url.rsplit(":", 1)[1])
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(bodies, f)
        bodies_file = f.name
    try:
        cmd = [sys.executable, __file__, str(port), path, bodies_file, "--connections", str(connections),
               "--seconds", str(seconds)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"load generator failed: {out.stderr.strip()[-300:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(bodies_file)


class Load:
    """The generator to use: wrk when installed (unless ``prefer_python``), else the asyncio one."""

    def __init__(self, workdir, prefer_python=False):
        self.workdir = Path(workdir)
        self.use_wrk = wrk_path() is not None and not prefer_python
        self._scripts = {}

    @property
    def name(self):
        return "wrk 1 thread" if self.use_wrk else "asyncio generator (1 process)"

    def run(self, url, path, bodies, connections, seconds):
        if not self.use_wrk:
            return run_python(url, path, bodies, connections, seconds)
        key = (path, id(bodies))
        if key not in self._scripts:
            target = self.workdir / f"wrk-{len(self._scripts)}.lua"
            self._scripts[key] = write_wrk_script(bodies, path, target)
        return run_wrk(url, self._scripts[key], connections, seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description="closed-loop HTTP load on 127.0.0.1")
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("bodies", help="a JSON file holding a list of request bodies (strings)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    with open(args.bodies) as f:
        bodies = json.load(f)
    print(json.dumps(drive(args.port, args.path, bodies, args.connections, args.seconds)))


if __name__ == "__main__":
    main()
