"""A worker of ``facegender serve --workers N``: uvicorn serving the connections its supervisor hands over.

The supervisor (:mod:`facegender.server.supervisor`) accepts each connection and sends its file descriptor
over the worker's channel, a Unix socket; the worker serves it with uvicorn's own HTTP protocol and reports on
the channel when it closes, so that the supervisor knows how many each worker holds open.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import Callable

import uvicorn

from facegender.server.supervisor import CLOSED_REPORT, READY_REPORT

__all__ = ["serve_handed_over"]

_FDS_PER_READ = 64


def serve_handed_over(*, channel: socket.socket, app: str, host: str, port: int) -> None:
    """Serve the app factory ``app`` on the connections that arrive on ``channel`` until stopped.

    ``host`` and ``port`` are what the supervisor listens on (for uvicorn's logs and the app's URLs).
    """
    # No websockets: an upgraded connection would change protocol and never be reported closed. No access log
    # of uvicorn's: the app writes its own.
    config = uvicorn.Config(app, factory=True, host=host, port=port, ws="none", access_log=False)
    _HandedOverServer(config, channel=channel).run()


class _CountedConnection(asyncio.Protocol):
    """Uvicorn's protocol for one connection, which also calls ``on_close`` once the connection is gone."""

    def __init__(self, protocol: asyncio.Protocol, on_close: Callable[[], None]) -> None:
        self._protocol = protocol
        self._on_close = on_close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._protocol.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return self._protocol.eof_received()

    def pause_writing(self) -> None:
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        self._protocol.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._on_close()


class _HandedOverServer(uvicorn.Server):
    """Uvicorn's server with no listening socket of its own: its connections come on ``channel``."""

    def __init__(self, config: uvicorn.Config, *, channel: socket.socket) -> None:
        super().__init__(config)
        channel.setblocking(False)
        self._channel = channel
        self._arriving: set[asyncio.Task[object]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # (exits the process if the app fails to start)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._channel.fileno(), self._take_connections, loop)
        self._report(READY_REPORT)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().remove_reader(self._channel.fileno())  # no new connections
        await super().shutdown(sockets=sockets)

    def _take_connections(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(self._channel, _FDS_PER_READ, _FDS_PER_READ)
        except (BlockingIOError, InterruptedError):
            return
        if not message:  # the supervisor is gone: stop as on SIGTERM
            loop.remove_reader(self._channel.fileno())
            self.should_exit = True
            return
        for fd in fds:
            connection = socket.socket(fileno=fd)
            arriving = loop.create_task(loop.connect_accepted_socket(self._connection, connection))
            self._arriving.add(arriving)
            arriving.add_done_callback(functools.partial(self._arrived, connection))

    def _arrived(self, connection: socket.socket, task: asyncio.Task[object]) -> None:
        self._arriving.discard(task)
        if task.cancelled() or task.exception() is not None:  # (the client left before it was served)
            connection.close()

    def _connection(self) -> asyncio.Protocol:
        protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return _CountedConnection(protocol, functools.partial(self._report, CLOSED_REPORT))

    def _report(self, report: bytes) -> None:
        # A full channel (a supervisor far behind) or a closed one loses the report: the count only steers.
        with contextlib.suppress(OSError):
            self._channel.send(report)
