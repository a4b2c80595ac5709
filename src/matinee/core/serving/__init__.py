"""HTTP serving of registered models, with hot swap and traffic splits.

Build an app from a :class:`Deployment` with :func:`build_app` (any ASGI server
runs it), or run it under uvicorn with :func:`serve` (what ``matinee serve``
does). Endpoints: ``POST /recommendations``, ``POST /artwork``, ``POST /feedback``,
``GET /healthz``, ``GET /readyz``, ``GET /metrics`` and ``GET /openapi.json``.
"""

from __future__ import annotations

from matinee.core.serving.app import ModelUnavailable, Server, build_app
from matinee.core.serving.config import Deployment, Endpoint, assign_arm, load_deployment
from matinee.core.serving.requests import InvalidRequest

__all__ = [
    "Deployment",
    "Endpoint",
    "InvalidRequest",
    "ModelUnavailable",
    "Server",
    "assign_arm",
    "build_app",
    "load_deployment",
    "serve",
]


#: Thread pools pinned to one thread in serving processes: a request's numpy work is
#: small, and BLAS threads fighting over the cores make it several times slower.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def serve(
    deployment: Deployment,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
) -> None:
    """Serve ``deployment`` with uvicorn until interrupted.

    SIGTERM or Ctrl-C stops accepting connections, lets the requests in flight
    finish, snapshots policies that learned online, flushes and closes the event
    log, and exits with status 0.

    Parameters
    ----------
    deployment
        The models and traffic splits to serve.
    host, port
        Where to listen; by default only this machine can connect.
    workers
        Worker processes, each with its own socket on the port (``SO_REUSEPORT``),
        so the kernel spreads connections over them. Online learning needs one worker.
    log_level
        uvicorn's log level.

    Raises
    ------
    ConfigError
        ``workers`` is not a positive integer, or is more than 1 with ``learn``.
    """
    import contextlib
    import os
    import signal
    import sys

    from matinee.errors import ConfigError

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, not {workers!r}", field="workers")
    if workers > 1 and deployment.learn:
        raise ConfigError("online learning (learn = true) needs one worker: each would learn and snapshot "
                          "on its own; use --workers 1", field="workers")
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    _limit_threads()
    # uvicorn re-raises the signal that stopped it once it has shut down cleanly; exit 0 then.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from matinee.core.serving import _worker

    if workers == 1:
        server = _worker.DrainingServer(_worker.config(build_app(deployment), log_level, host=host, port=port))
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once it has drained
            server.run()
        if not server.started:  # the port is taken, or the models would not load: uvicorn has said why
            sys.exit(3)
        return

    code = _worker.supervise(deployment.to_dict(), host, port, workers, log_level)
    # The workers have flushed their event logs and exited. The parent holds nothing to flush,
    # and its interpreter shutdown can hang in native thread-pool teardown (numpy, OpenBLAS):
    # leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _limit_threads() -> None:
    """Pin already-loaded BLAS pools to one thread (the environment only reaches new processes)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy read the environment at import; nothing more to do
        return
    threadpool_limits(1)
