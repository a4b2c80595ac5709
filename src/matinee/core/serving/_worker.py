"""The app factory each worker process of ``serve(..., workers=N)`` imports.

The deployment travels from the parent in the ``MATINEE_DEPLOYMENT`` environment
variable as JSON (:meth:`Deployment.to_dict`).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from matinee.core.serving.app import build_app
from matinee.core.serving.config import Deployment

#: The environment variable holding the deployment for worker processes.
ENV = "MATINEE_DEPLOYMENT"


def create_app() -> Starlette:
    """The app of the deployment in ``$MATINEE_DEPLOYMENT``."""
    return build_app(Deployment.from_dict(json.loads(os.environ[ENV])))


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with TCP_NODELAY on every connection.

    With several workers uvicorn binds the listening socket itself, with protocol
    number 0, and asyncio sets TCP_NODELAY only on connections from sockets that
    say IPPROTO_TCP. The h11 protocol writes a response's head and body
    separately, so without it Nagle's algorithm holds the body back until the
    client acknowledges the head -- up to 40 ms on every request.
    """

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # not a TCP socket after all: nothing to switch off
                pass
        super().connection_made(transport)
