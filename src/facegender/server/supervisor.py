"""The process that runs the service for ``facegender serve``: one worker in itself, or a supervisor of several.

``facegender serve`` checks the models and settings, then replaces itself with this file run by path
(``python supervisor.py HOST PORT WORKERS``), so that it holds nothing of what the check loaded. With one
worker, uvicorn serves in this process. With several (on POSIX systems), this process stays on the standard
library alone (about 14 MiB; uvicorn's own supervisor, with the multiprocessing resource tracker it starts,
held 39 MiB): it binds the listening socket, starts each worker as a fresh interpreter with one end of a Unix
socket pair, its channel (``python supervisor.py --worker FD HOST PORT SUPERVISOR_PID``), starts a new worker
in place of any that dies, and stops them all gracefully on SIGTERM, SIGINT or SIGHUP. Each worker builds the
app from the ``FACEGENDER_*`` environment.

The supervisor accepts the connections itself and hands each, over its channel, to the worker that holds the
fewest open among those that have reported ready (while none has, connections wait in the kernel's queue); a
worker reports each connection it closes. Workers that accepted from one shared socket took
keep-alive connections as the kernel gave them: 16 clients' connections were seen split 5 and 11 between two
workers, so that a third of the clients waited less than half as long as the rest (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from types import FrameType
from typing import Final

__all__ = ["APP_FACTORY", "CLOSED_REPORT", "READY_REPORT", "STARTUP_FAILURE", "Supervisor", "run", "serve_socket"]

APP_FACTORY: Final = "facegender.server.app:app_from_env"

STARTUP_FAILURE: Final = 3
"""Exit status of a uvicorn worker whose app failed to start; a supervisor that sees it stops with it."""

CLOSED_REPORT: Final = b"c"
"""What a worker sends on its channel for each connection it has closed."""
READY_REPORT: Final = b"r"
"""What a worker sends on its channel once its app has started and it takes connections."""

# Where a socket can be passed to another process over a Unix socket; elsewhere (Windows) uvicorn's supervisor
# runs the workers.
_CAN_HAND_OVER_SOCKETS: Final = os.name == "posix"
_STOP_SIGNALS: Final = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)  # Windows has no SIGHUP
_POLL_S: Final = 0.5
_BACKLOG: Final = 2048  # uvicorn's default
_ACCEPTS_PER_TURN: Final = 64  # so that a flood of connections still leaves turns for the workers and signals
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

    # The app writes its own access log (with the request id); uvicorn's would repeat each line without it.
    # Uvicorn re-raises SIGTERM once it has shut down, which would kill the process with it; the handler
    # set here turns that into a normal exit.
    previous = signal.signal(signal.SIGTERM, _exit_ok)
    try:
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers, access_log=False)
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_socket(*, fd: int, host: str, port: int, supervisor: int) -> None:
    """A worker: serve :data:`APP_FACTORY` on the connections handed over on the channel ``fd`` until stopped.

    ``host`` and ``port`` are what the supervisor listens on; ``supervisor`` is the process id of the parent
    whose death stops this worker too. Uvicorn exits with :data:`STARTUP_FAILURE` when the app fails to start.
    """
    _stop_with(supervisor)
    from facegender.server.worker import serve_handed_over  # uvicorn and the app: the workers' alone

    serve_handed_over(channel=socket.socket(fileno=fd), app=APP_FACTORY, host=host, port=port)


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


@dataclass(eq=False)
class _Worker:
    """A worker process, the supervisor's end of its channel, how many connections it holds open, and whether
    it takes connections yet."""

    process: subprocess.Popen[bytes]
    channel: socket.socket
    connections: int = 0
    ready: bool = False


class Supervisor:
    """Runs ``workers`` worker processes, keeps that many running, and hands each connection to the ready one
    that holds the fewest open."""

    def __init__(self, *, host: str, port: int, workers: int) -> None:
        self.host = host
        self.port = port
        self.workers = workers
        self._stopping: int | None = None  # the signal that asked to stop, once one did
        self._running: list[_Worker] = []

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
        listener.setblocking(False)
        return listener

    def _on_signal(self, number: int, __: FrameType | None) -> None:
        if self._stopping is not None:  # asked twice: stop now, without waiting for requests in flight
            for worker in self._running:
                worker.process.kill()
        self._stopping = number

    def _start(self) -> _Worker:
        channel, theirs = socket.socketpair()
        with theirs:
            fd = theirs.fileno()
            command = [sys.executable, __file__, "--worker", str(fd), self.host, str(self.port), str(os.getpid())]
            process = subprocess.Popen(command, pass_fds=(fd,))
        channel.setblocking(False)
        logger.info("Started worker [%d]", process.pid)
        return _Worker(process=process, channel=channel)

    def _supervise(self, listener: socket.socket) -> int:
        with selectors.DefaultSelector() as selector:
            self._running = [self._start() for _ in range(self.workers)]
            for worker in self._running:
                selector.register(worker.channel, selectors.EVENT_READ, worker)
            status = 0
            listening = False
            while self._stopping is None:
                # While no worker is ready (starting, or all being replaced), connections wait in the kernel's
                # queue, as they would for workers listening themselves; a starting one gets none meanwhile.
                if listening != any(worker.ready for worker in self._running):
                    listening = not listening
                    if listening:
                        selector.register(listener, selectors.EVENT_READ)
                    else:
                        selector.unregister(listener)
                for key, _ in selector.select(_POLL_S):
                    if key.data is None:
                        self._hand_over(listener)
                    elif not self._read_reports(key.data):
                        selector.unregister(key.fileobj)  # its worker is gone: replaced below
                for index, worker in enumerate(self._running):
                    code = worker.process.poll()
                    if code is None or self._stopping is not None:
                        continue
                    if code == STARTUP_FAILURE:
                        logger.error("Worker [%d] failed to start; stopping", worker.process.pid)
                        self._stopping, status = signal.SIGTERM, STARTUP_FAILURE
                        break
                    logger.warning("Worker [%d] exited with status %d; starting another", worker.process.pid, code)
                    with contextlib.suppress(KeyError):  # (already, if its channel closed first)
                        selector.unregister(worker.channel)
                    worker.channel.close()
                    self._running[index] = self._start()
                    selector.register(self._running[index].channel, selectors.EVENT_READ, self._running[index])
        listener.close()  # no new connections while the workers finish the requests they have
        for worker in self._running:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self._running:
            worker.process.wait()
            worker.channel.close()
        if status == 0:
            logger.info("Stopped on %s", signal.Signals(self._stopping).name)
        return status

    def _hand_over(self, listener: socket.socket) -> None:
        """Accept the waiting connections and hand each to the ready worker with the fewest open (a connection
        that no worker takes is closed)."""
        for _ in range(_ACCEPTS_PER_TURN):
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the client gave up meanwhile, or no file descriptors are left
                logger.warning("could not accept a connection: %s", exc.strerror or exc)
                return
            with connection:
                for worker in sorted((w for w in self._running if w.ready), key=lambda ready: ready.connections):
                    try:
                        socket.send_fds(worker.channel, [b"\0"], [connection.fileno()])
                    except OSError:  # its channel is full, or it is gone: the next
                        continue
                    worker.connections += 1
                    break

    @staticmethod
    def _read_reports(worker: _Worker) -> bool:
        """Take ``worker``'s reports (ready, a connection closed); False once its channel has closed."""
        try:
            reports = worker.channel.recv(4096)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            reports = b""
        worker.connections = max(0, worker.connections - reports.count(CLOSED_REPORT))
        worker.ready = bool(reports) and (worker.ready or READY_REPORT in reports)
        return bool(reports)


if __name__ == "__main__":
    # Run by path, Python puts this file's folder first on sys.path, where app.py, web.py and the rest
    # would shadow any top-level modules of those names.
    del sys.path[0]
    if sys.argv[1] == "--worker":
        serve_socket(fd=int(sys.argv[2]), host=sys.argv[3], port=int(sys.argv[4]), supervisor=int(sys.argv[5]))
    else:
        run(host=sys.argv[1], port=int(sys.argv[2]), workers=int(sys.argv[3]))
