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


def serve(deployment: Deployment, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve ``deployment`` with uvicorn until interrupted.

    Parameters
    ----------
    deployment
        The models and traffic splits to serve.
    host, port
        Where to listen; by default only this machine can connect.
    log_level
        uvicorn's log level.
    """
    import uvicorn

    uvicorn.run(build_app(deployment), host=host, port=port, log_level=log_level)
