"""Several workers: one that dies is replaced, and the service answers throughout."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from http_helpers import StartServer, assert_gender_result, post

WORKERS = 2
REPLACE_TIMEOUT_S = 60.0


def _workers(supervisor: int) -> set[int]:
    """The worker processes of ``supervisor``: children started by multiprocessing spawn, not its resource tracker."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == supervisor and b"spawn_main" in command:
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
