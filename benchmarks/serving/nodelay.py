"""uvicorn's h11 protocol with TCP_NODELAY set on every connection.

With ``--workers`` > 1, uvicorn binds the listening socket itself as
``socket.socket(family=AF_INET)``, whose ``proto`` is 0, and asyncio sets
TCP_NODELAY on accepted connections only when ``proto == IPPROTO_TCP``. The h11
protocol writes a response's head and body in separate writes, so Nagle's
algorithm holds the body back until the client acknowledges the head, which a
client delays by up to 40 ms: every request then takes about 40 ms, whatever
the app does. A single-worker server (``loop.create_server`` with a host and
port) does not have the problem.

The benchmark's "TCP_NODELAY" configuration runs every side's uvicorn with
``--http nodelay:NoDelayH11Protocol`` (MLflow's through ``UVICORN_HTTP``), to
measure the apps rather than that stall.
"""

import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport):
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
