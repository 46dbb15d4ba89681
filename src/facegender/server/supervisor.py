"""The process that runs the service for ``facegender serve``: one worker in itself, or a supervisor of several.

``facegender serve`` checks the models and settings, then replaces itself with this file run by path
(``python supervisor.py HOST PORT WORKERS``), so that it holds nothing of what the check loaded. With one
worker, uvicorn serves in this process. With several (on POSIX systems), this process stays on the standard
library alone (about 14 MiB; uvicorn's own supervisor, with the multiprocessing resource tracker it starts,
held 39 MiB): it binds the listening socket, starts each worker as a fresh interpreter that inherits the
socket (``python supervisor.py --worker FD HOST PORT SUPERVISOR_PID``), starts a new worker in place of any
that dies, and stops them all gracefully on SIGTERM, SIGINT or SIGHUP. The workers share the socket, so the
kernel spreads the connections among them; each builds the app from the ``FACEGENDER_*`` environment.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType
from typing import Final

__all__ = ["APP_FACTORY", "STARTUP_FAILURE", "Supervisor", "run", "serve_socket"]

APP_FACTORY: Final = "facegender.server.app:app_from_env"

STARTUP_FAILURE: Final = 3
"""Exit status of a uvicorn worker whose app failed to start; a supervisor that sees it stops with it."""

# Where a new process can inherit the listening socket; elsewhere (Windows) uvicorn's supervisor runs them.
_CAN_HAND_OVER_SOCKETS: Final = os.name == "posix"
_STOP_SIGNALS: Final = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)  # Windows has no SIGHUP
_POLL_S: Final = 0.5
_BACKLOG: Final = 2048  # uvicorn's default
_PR_SET_PDEATHSIG: Final = 1  # prctl(2)

logger = logging.getLogger("facegender.server")


def _exit_ok(__: int, ___: FrameType | None) -> None:
    raise SystemExit(0)


def run(*, host: str, port: int, workers: int) -> None:
    """Serve :data:`APP_FACTORY` until stopped; exits the process with a non-zero status when it cannot.

    SIGTERM stops the server gracefully: it takes no new connections, answers the requests already received,
    and the process then exits with status 0.
    """
    if workers > 1 and _CAN_HAND_OVER_SOCKETS:
        sys.exit(Supervisor(host=host, port=port, workers=workers).run())
    import uvicorn

    # Uvicorn re-raises SIGTERM once it has shut down, which would kill the process with it; the handler
    # set here turns that into a normal exit.
    previous = signal.signal(signal.SIGTERM, _exit_ok)
    try:
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers)
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_socket(*, fd: int, host: str, port: int, supervisor: int) -> None:
    """A worker: serve :data:`APP_FACTORY` on the inherited listening socket ``fd`` until stopped.

    ``host`` and ``port`` are what the socket is bound to; ``supervisor`` is the process id of the parent whose
    death stops this worker too. Uvicorn exits with :data:`STARTUP_FAILURE` when the app fails to start.
    """
    _stop_with(supervisor)
    import uvicorn

    listener = socket.socket(fileno=fd)
    server = uvicorn.Server(uvicorn.Config(APP_FACTORY, factory=True, host=host, port=port))
    server.run(sockets=[listener])


def _stop_with(supervisor: int) -> None:
    """Have the kernel send this process SIGTERM when its parent, ``supervisor``, dies (Linux), so that a
    supervisor killed outright leaves no workers serving on behind it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes.util  # here, not at the top: the supervisor itself has no use for it

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # it died before prctl took effect, and this process was adopted
        os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    """Runs ``workers`` worker processes on one listening socket and keeps that many running."""

    def __init__(self, *, host: str, port: int, workers: int) -> None:
        self.host = host
        self.port = port
        self.workers = workers
        self._stopping: int | None = None  # the signal that asked to stop, once one did
        self._running: list[subprocess.Popen[bytes]] = []

    def run(self) -> int:
        """Serve until a stop signal; the exit status: 0 after a graceful stop, else why it stopped."""
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
        try:
            listener = self._bind()
        except OSError as exc:
            logger.error("cannot listen on %s port %d: %s", self.host, self.port, exc.strerror or exc)
            return 1
        previous = {number: signal.signal(number, self._on_signal) for number in _STOP_SIGNALS}
        try:
            with listener:
                url_host = f"[{self.host}]" if ":" in self.host else self.host
                logger.info(
                    "Serving on http://%s:%d with %d workers (supervisor [%d]; Press CTRL+C to quit)",
                    url_host,
                    self.port,
                    self.workers,
                    os.getpid(),
                )
                return self._supervise(listener)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _bind(self) -> socket.socket:
        family, kind, protocol, _, address = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, protocol)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(_BACKLOG)
        except OSError:
            listener.close()
            raise
        listener.set_inheritable(True)
        return listener

    def _on_signal(self, number: int, __: FrameType | None) -> None:
        if self._stopping is not None:  # asked twice: stop now, without waiting for requests in flight
            for process in self._running:
                process.kill()
        self._stopping = number

    def _start(self, listener: socket.socket) -> subprocess.Popen[bytes]:
        fd = listener.fileno()
        command = [sys.executable, __file__, "--worker", str(fd), self.host, str(self.port), str(os.getpid())]
        process = subprocess.Popen(command, pass_fds=(fd,))
        logger.info("Started worker [%d]", process.pid)
        return process

    def _supervise(self, listener: socket.socket) -> int:
        self._running = [self._start(listener) for _ in range(self.workers)]
        status = 0
        while self._stopping is None:
            time.sleep(_POLL_S)
            for index, process in enumerate(self._running):
                code = process.poll()
                if code is None or self._stopping is not None:
                    continue
                if code == STARTUP_FAILURE:
                    logger.error("Worker [%d] failed to start; stopping", process.pid)
                    self._stopping, status = signal.SIGTERM, STARTUP_FAILURE
                    break
                logger.warning("Worker [%d] exited with status %d; starting another", process.pid, code)
                self._running[index] = self._start(listener)
        for process in self._running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._running:
            process.wait()
        if status == 0:
            logger.info("Stopped on %s", signal.Signals(self._stopping).name)
        return status


if __name__ == "__main__":
    # Run by path, Python puts this file's folder first on sys.path, where app.py, web.py and the rest
    # would shadow any top-level modules of those names.
    del sys.path[0]
    if sys.argv[1] == "--worker":
        serve_socket(fd=int(sys.argv[2]), host=sys.argv[3], port=int(sys.argv[4]), supervisor=int(sys.argv[5]))
    else:
        run(host=sys.argv[1], port=int(sys.argv[2]), workers=int(sys.argv[3]))
