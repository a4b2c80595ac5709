"""Worker processes of ``serve(..., workers=N)``, and the HTTP server and protocol every server uses.

Each worker binds its own listening socket to the shared port with
``SO_REUSEPORT``, so the kernel spreads new connections over the workers. (With
one socket shared by all, whichever worker wakes first accepts a burst of
connections, and a load that opens its connections at once ends up on one
worker and one core.) The parent only starts, watches and stops them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import weakref
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from matinee.core.serving.app import build_app
from matinee.core.serving.config import Deployment

#: Servers that have begun to shut down (see :class:`DrainingServer`).
_DRAINING: weakref.WeakSet[ServerState] = weakref.WeakSet()

#: How long a shutting-down server waits for requests in flight before cancelling them.
DRAIN_SECONDS = 30


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with TCP_NODELAY on every connection, that
    closes connections made once its server has begun to shut down.

    With several workers uvicorn binds the listening socket itself, with protocol
    number 0, and asyncio sets TCP_NODELAY only on connections from sockets that
    say IPPROTO_TCP. The h11 protocol writes a response's head and body
    separately, so without it Nagle's algorithm holds the body back until the
    client acknowledges the head -- up to 40 ms on every request.
    """

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # not a TCP socket after all: nothing to switch off
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        if self.server_state in _DRAINING:
            self.shutdown()


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose shutdown cannot be held open by keep-alive clients.

    asyncio accepts a connection in one step and makes its protocol in a later
    one, so a connection accepted just before shutdown can miss uvicorn's call
    to close idle connections. A client that keeps sending on it then keeps the
    server waiting for it forever. Here every connection made after shutdown
    began is closed like the others (see :class:`NoDelayH11Protocol`), and
    requests still running after :data:`DRAIN_SECONDS` are cancelled.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        _DRAINING.add(self.server_state)
        await super().shutdown(sockets)


def config(app: Any, log_level: str, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration every matinee server runs with."""
    return uvicorn.Config(app, log_level=log_level, http=NoDelayH11Protocol,
                          timeout_graceful_shutdown=DRAIN_SECONDS, **options)



#: A worker that exits within this many seconds of starting could not start (a taken port, a bad
#: model): the server stops instead of restarting it in a loop.
STARTUP_SECONDS = 10.0


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other workers can bind too (``SO_REUSEPORT``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def run_worker(data: dict[str, Any], host: str, port: int, log_level: str) -> None:
    """One worker process: its own socket on the shared port and its own app, until SIGTERM."""
    from matinee.core.serving import _limit_threads

    _limit_threads()
    for sig in (signal.SIGTERM, signal.SIGINT):  # uvicorn re-raises the signal once drained: exit 0 then
        signal.signal(sig, lambda *_: sys.exit(0))
    sock = listen(host, port)
    DrainingServer(config(build_app(Deployment.from_dict(data)), log_level)).run(sockets=[sock])


def supervise(data: dict[str, Any], host: str, port: int, workers: int, log_level: str) -> int:
    """Run ``workers`` worker processes until SIGTERM or SIGINT; returns the exit status.

    A worker that dies while serving is replaced; one that dies while starting
    stops the server (status 1). On SIGTERM every worker drains its requests and
    flushes its event log before the parent returns.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    stopping: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start() -> tuple[Any, float]:
        process = ctx.Process(target=run_worker, args=(data, host, port, log_level), name="matinee-serve-worker")
        process.start()
        return process, time.monotonic()

    procs = [start() for _ in range(workers)]
    print(f"matinee serve: {workers} workers on http://{host}:{port} (parent {os.getpid()})", file=sys.stderr,
          flush=True)
    status = 0
    while not stopping:
        time.sleep(0.2)
        for i, (process, started) in enumerate(procs):
            if process.is_alive() or stopping:
                continue
            if process.exitcode != 0 and time.monotonic() - started < STARTUP_SECONDS:
                print(f"matinee serve: a worker could not start (exit code {process.exitcode}); stopping",
                      file=sys.stderr, flush=True)
                status = 1
                stopping.append(0)
                break
            print(f"matinee serve: worker {process.pid} exited (code {process.exitcode}); starting another",
                  file=sys.stderr, flush=True)
            procs[i] = start()
    for process, _ in procs:
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    for process, _ in procs:
        process.join()
        if process.exitcode not in (0, None) and not status:
            status = process.exitcode if process.exitcode > 0 else 1
    return status
