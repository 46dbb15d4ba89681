"""Graceful shutdown: SIGTERM lets the requests already in flight finish, then ``facegender serve`` exits 0, with one
worker or several."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from http_helpers import StartServer, assert_gender_result

IN_FLIGHT = 4
EXIT_TIMEOUT_S = 30.0
SETTLE_S = 0.5
"""Time for the server to read the request heads that the clients have sent before it is signalled."""


def _held_body(data: bytes, sent: threading.Semaphore, release: threading.Event) -> Iterator[bytes]:
    """``data`` in two pieces: the second only once ``release`` is set, so the request is surely in flight."""
    half = len(data) // 2
    yield data[:half]
    sent.release()
    release.wait()
    yield data[half:]


def _multipart(photo: bytes, boundary: str = "shutdown-boundary") -> tuple[bytes, str]:
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n\r\n'.encode()
    return head + photo + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_in_flight_requests_and_exits_0(
    start_cli_server: StartServer, portraits: list[tuple[Path, str]], workers: int
) -> None:
    photos = [path.read_bytes() for path, _ in portraits[:IN_FLIGHT]]
    sent = threading.Semaphore(0)
    release = threading.Event()
    with (
        start_cli_server(FACEGENDER_WORKERS=str(workers)) as server,
        httpx.Client(base_url=server.url, timeout=60.0) as client,
    ):
        # Each client sends its request head and half its body, then waits; the server is signalled meanwhile.
        def send(photo: bytes) -> httpx.Response:
            body, content_type = _multipart(photo)
            content = _held_body(body, sent, release)
            return client.post("/api/gender", content=content, headers={"Content-Type": content_type})

        with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
            futures = [pool.submit(send, photo) for photo in photos]
            try:
                for _ in photos:
                    assert sent.acquire(timeout=30.0), "a request did not start"
                time.sleep(SETTLE_S)
                server.process.send_signal(signal.SIGTERM)
                time.sleep(SETTLE_S)  # the server is shutting down now, with the requests unfinished
                assert server.process.poll() is None, "the server exited with requests in flight"
            finally:
                release.set()
            responses = [future.result(timeout=60.0) for future in futures]
        for response in responses:
            assert response.status_code == 200, response.text
            assert_gender_result(response.json())
        try:
            code = server.process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit within {EXIT_TIMEOUT_S:.0f} s of SIGTERM:\n{server.log()}")
        assert code == 0, server.log()
        log = server.log()
        assert "Waiting for connections to close" in log or "Shutting down" in log
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/health", timeout=2.0)
