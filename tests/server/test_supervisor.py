"""``facegender serve`` with several workers: the supervisor hands each connection to the worker with the fewest
open, replaces a worker that dies, takes its workers with it when it is killed, and stops on a worker that
cannot start or a port it cannot listen on."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from http_helpers import Server, StartServer, assert_gender_result, post

from benchmarks.common import free_port
from facegender.server import supervisor as supervisor_module

WORKERS = 2
REPLACE_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 60.0


def _workers(supervisor: int) -> set[int]:
    """The worker processes of ``supervisor``: its children that run ``supervisor.py --worker``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == supervisor and b"--worker" in command:
            found.add(int(entry.name))
    return found


def _wait_for_workers(supervisor: int, *, without: set[int]) -> set[int]:
    deadline = time.monotonic() + REPLACE_TIMEOUT_S
    while time.monotonic() < deadline:
        workers = _workers(supervisor) - without
        if len(workers) == WORKERS:
            return workers
        time.sleep(0.2)
    pytest.fail(f"{WORKERS} live workers not seen within {REPLACE_TIMEOUT_S:.0f} s")


def _wait_for_startups(server: Server, count: int) -> None:
    """Wait until ``count`` workers have logged that their app started (and so report ready)."""
    deadline = time.monotonic() + REPLACE_TIMEOUT_S
    while server.log_path.read_text(errors="replace").count("Application startup complete.") < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{count} workers did not start within {REPLACE_TIMEOUT_S:.0f} s")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds worker processes through /proc")
def test_a_killed_worker_is_replaced(start_cli_server: StartServer, portraits: list[tuple[Path, str]]) -> None:
    photo = portraits[0][0].read_bytes()
    with start_cli_server(FACEGENDER_WORKERS=str(WORKERS)) as server:
        supervisor = server.process.pid
        first = _wait_for_workers(supervisor, without=set())
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replaced = _wait_for_workers(supervisor, without={victim})
        assert victim not in replaced and len(replaced & first) == WORKERS - 1
        # Fresh connections spread over both workers; every one is answered once the new worker is ready.
        deadline = time.monotonic() + REPLACE_TIMEOUT_S
        answered = 0
        while answered < 2 * WORKERS and time.monotonic() < deadline:
            with httpx.Client(base_url=server.url, timeout=60.0) as client:
                try:
                    response = post(client, photo)
                except httpx.TransportError:
                    time.sleep(0.2)
                    continue
            assert response.status_code == 200, response.text
            assert_gender_result(response.json())
            answered += 1
        assert answered == 2 * WORKERS, server.log()
        assert server.process.poll() is None


def _exited(pid: int) -> bool:
    """Whether ``pid`` is gone (or a zombie: exited, not yet reaped by a parent that no longer matters)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds worker processes through /proc")
def test_the_workers_stop_when_the_supervisor_is_killed(start_cli_server: StartServer) -> None:
    with start_cli_server(FACEGENDER_WORKERS=str(WORKERS)) as server:
        workers = _wait_for_workers(server.process.pid, without=set())
        server.process.kill()
        server.process.wait()
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while not all(_exited(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(_exited(pid) for pid in workers), server.log()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/health", timeout=2.0)


def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path) -> None:
    # facegender serve checks the models before it starts the supervisor, so run the supervisor directly.
    command = [sys.executable, supervisor_module.__file__, "127.0.0.1", str(free_port()), str(WORKERS)]
    env = {**os.environ, "FACEGENDER_CLASSIFIER_PATH": str(tmp_path / "none.onnx")}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=EXIT_TIMEOUT_S)
    assert result.returncode == supervisor_module.STARTUP_FAILURE, result.stderr
    assert "failed to start" in result.stderr


def test_a_port_in_use_stops_serve_with_one_error_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "facegender", "serve", "--workers", str(WORKERS), "--port", str(port)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=EXIT_TIMEOUT_S)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and f"port {port}" in errors[0], result.stderr


@pytest.mark.parametrize("posix", [True, False])
def test_several_workers_get_our_supervisor_where_sockets_can_be_handed_over(
    monkeypatch: pytest.MonkeyPatch, posix: bool
) -> None:
    ran: list[str] = []

    def our_supervisor(self: supervisor_module.Supervisor) -> int:
        ran.append(f"ours with {self.workers}")
        return 0

    def uvicorns(*_: object, workers: int, **__: object) -> None:
        ran.append(f"uvicorn's with {workers}")

    monkeypatch.setattr(supervisor_module, "_CAN_HAND_OVER_SOCKETS", posix)
    monkeypatch.setattr(supervisor_module.Supervisor, "run", our_supervisor)
    monkeypatch.setattr("uvicorn.run", uvicorns)
    try:
        supervisor_module.run(host="127.0.0.1", port=free_port(), workers=WORKERS)
    except SystemExit as stop:
        assert stop.code == 0
    assert ran == [f"ours with {WORKERS}" if posix else f"uvicorn's with {WORKERS}"]


def test_a_second_stop_signal_kills_the_workers_at_once() -> None:
    supervisor = supervisor_module.Supervisor(host="127.0.0.1", port=free_port(), workers=1)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ours, theirs = socket.socketpair()
    supervisor._running = [supervisor_module._Worker(process=worker, channel=ours)]
    try:
        supervisor._on_signal(signal.SIGTERM, None)  # the first asks for a graceful stop: the workers stay
        assert worker.poll() is None
        supervisor._on_signal(signal.SIGINT, None)
        assert worker.wait(timeout=10) == -signal.SIGKILL
    finally:
        worker.kill()
        worker.wait()
        ours.close()
        theirs.close()


def _established(port: int) -> set[int]:
    """The socket inodes of the established TCP connections whose local port is ``port`` (IPv4)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, state, inode = int(fields[1].split(":")[1], 16), fields[3], int(fields[9])
        if local_port == port and state == "01":
            inodes.add(inode)
    return inodes


def _sockets_held(pid: int, inodes: set[int]) -> int:
    """How many of the sockets ``inodes`` process ``pid`` holds open."""
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = str(fd.readlink())
            held += target.startswith("socket:[") and int(target[8:-1]) in inodes
    return held


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="counts connections through /proc")
def test_keep_alive_connections_are_shared_evenly(
    start_cli_server: StartServer, portraits: list[tuple[Path, str]]
) -> None:
    photo = portraits[0][0].read_bytes()
    connections = 4 * WORKERS
    with start_cli_server(FACEGENDER_WORKERS=str(WORKERS)) as server:
        workers = _wait_for_workers(server.process.pid, without=set())
        # The server answers once one worker is ready; a worker still loading gets no connections meanwhile.
        _wait_for_startups(server, WORKERS)
        clients = [httpx.Client(base_url=server.url, timeout=60.0) for _ in range(connections)]
        try:
            for client in clients:  # one request each, in turn: each connection is open and served
                response = post(client, photo)
                assert response.status_code == 200, response.text
            port = int(server.url.rsplit(":", 1)[1])
            inodes = _established(port)
            assert len(inodes) == connections
            assert sorted(_sockets_held(pid, inodes) for pid in workers) == [connections // WORKERS] * WORKERS
        finally:
            for client in clients:
                client.close()


def test_each_connection_goes_to_the_ready_worker_with_the_fewest_open() -> None:
    supervisor = supervisor_module.Supervisor(host="127.0.0.1", port=free_port(), workers=3)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    pairs = [socket.socketpair() for _ in range(3)]
    busy, quiet, starting = (
        supervisor_module._Worker(process=subprocess.Popen(sleeper), channel=ours, connections=open_now)
        for (ours, _), open_now in zip(pairs, (3, 1, 0), strict=True)
    )
    supervisor._running = [busy, quiet, starting]
    for worker, (_, theirs) in zip((busy, quiet), pairs, strict=False):  # the third is still starting
        theirs.sendall(supervisor_module.READY_REPORT)
        _wait_readable(worker.channel)
        assert supervisor._read_reports(worker) and worker.ready
    listener = supervisor._bind()
    try:
        with socket.create_connection(("127.0.0.1", supervisor.port)) as client:
            _wait_readable(listener)
            supervisor._hand_over(listener)
            assert (busy.connections, quiet.connections, starting.connections) == (3, 2, 0)
            _, fds, _, _ = socket.recv_fds(pairs[1][1], 16, 4)
            assert len(fds) == 1
            with socket.socket(fileno=fds[0]) as handed:  # the very connection: what the client sends arrives
                client.sendall(b"ping")
                assert handed.recv(4) == b"ping"
        pairs[0][1].sendall(supervisor_module.CLOSED_REPORT * 2)
        _wait_readable(busy.channel)
        assert supervisor._read_reports(busy) and busy.connections == 1
        pairs[1][1].close()  # the worker is gone
        _wait_readable(quiet.channel)
        assert not supervisor._read_reports(quiet) and not quiet.ready
    finally:
        listener.close()
        for worker in (busy, quiet, starting):
            worker.process.kill()
            worker.process.wait()
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


def _wait_readable(sock: socket.socket) -> None:
    readable, _, _ = select.select([sock], [], [], 10.0)
    assert readable, "nothing arrived within 10 s"
