"""The worker's limits: bounded inference, body caps decided before the body is read, and request deadlines."""

from __future__ import annotations

import io
import json
import select
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import anyio
import httpx
import pytest
from conftest import SMALL_UPLOAD_BYTES
from http_helpers import StartServer, assert_error, grey_png, post
from PIL import Image

from facegender.errors import OverloadedError
from facegender.server.limits import MULTIPART_OVERHEAD_BYTES, InferenceLimiter

BOUNDARY = "limits-boundary"
SLOW_REQUEST_TIMEOUT_S = 0.25
"""A deadline far below the time the slow photo takes with the finest face search."""


def _head(url: str, path: str, headers: dict[str, str]) -> bytes:
    host = httpx.URL(url).netloc.decode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _exchange(url: str, head: bytes, parts: Iterable[bytes], *, pause_s: float = 0.05) -> tuple[int, dict[str, str]]:
    """Send ``head``, then ``parts`` one at a time until the server answers; its status and JSON body.

    The parts go slowly so that the server has read everything sent when it answers: closing a socket with
    unread bytes would reset the connection and lose the answer.
    """
    address = httpx.URL(url)
    with socket.create_connection((address.host, address.port), timeout=30.0) as connection:
        connection.sendall(head)
        for part in parts:
            readable, _, _ = select.select([connection], [], [], pause_s)
            if readable:
                break
            connection.sendall(part)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(body)["error"]


def _multipart_head(field: str = "image") -> bytes:
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="p.jpg"\r\n\r\n'.encode()


def _chunked(data: Iterable[bytes]) -> Iterable[bytes]:
    for piece in data:
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"


@pytest.mark.slow
def test_declared_oversize_body_is_refused_before_it_is_read(small_upload_server: tuple[str, int]) -> None:
    url, _ = small_upload_server
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(50 * 1024 * 1024)}
    # Only the first bytes of the declared 50 MB are ever sent: the answer cannot wait for the rest.
    status, error = _exchange(url, _head(url, "/api/gender", headers), [_multipart_head()], pause_s=5.0)
    assert (status, error["code"]) == (413, "image_too_large")
    assert "limit" in error["message"]


@pytest.mark.slow
def test_streamed_oversize_body_is_cut_off_at_the_cap(small_upload_server: tuple[str, int]) -> None:
    url, _ = small_upload_server
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Transfer-Encoding": "chunked"}
    cap = SMALL_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES
    pieces = [_multipart_head(), *[b"\xff" * 8192] * (4 * cap // 8192)]  # four times the cap, never finished
    status, error = _exchange(url, _head(url, "/api/gender", headers), _chunked(pieces))
    assert (status, error["code"]) == (413, "image_too_large")
    with httpx.Client(base_url=url, timeout=30.0) as client:
        assert_error(post(client, grey_png()), 422, "no_face")  # the worker is fine


@pytest.mark.slow
def test_deadlines(start_server: StartServer, portraits: list[tuple[Path, str]]) -> None:
    """An upload that stalls gets 408; work past the deadline gets 503 ``timeout``; the server stays healthy."""
    with Image.open(portraits[0][0]) as portrait:
        large = portrait.convert("RGB").resize((4000, 3200))
    buffer = io.BytesIO()
    large.save(buffer, "JPEG", quality=80)
    slow_photo = buffer.getvalue()
    env = {"FACEGENDER_REQUEST_TIMEOUT_S": str(SLOW_REQUEST_TIMEOUT_S), "FACEGENDER_MIN_FACE_SIZE": "8"}
    with start_server(**env) as server, httpx.Client(base_url=server.url, timeout=60.0) as client:
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": "100000"}
        status, error = _exchange(server.url, _head(server.url, "/api/gender", headers), [b"x" * 1000], pause_s=10.0)
        assert (status, error["code"]) == (408, "upload_timeout")

        started = time.perf_counter()
        response = post(client, slow_photo)
        assert time.perf_counter() - started < 5.0
        assert_error(response, 503, "timeout")
        assert response.headers["retry-after"] == "1"
        assert client.get("/ready").status_code == 200
        metrics = client.get("/metrics").text
        assert 'code="timeout"' in metrics
        assert 'code="upload_timeout"' in metrics


def test_limiter_refuses_at_once_when_the_queue_is_full() -> None:
    async def main() -> None:
        limiter = InferenceLimiter(concurrency=1, queue=1)
        release = threading.Event()
        order: list[str] = []

        def work(name: str) -> str:
            release.wait(10.0)
            order.append(name)
            return name

        async with anyio.create_task_group() as group:
            group.start_soon(limiter.run, work, "first")
            await anyio.wait_all_tasks_blocked()
            group.start_soon(limiter.run, work, "queued")
            await anyio.wait_all_tasks_blocked()
            assert limiter.waiting == 1
            with pytest.raises(OverloadedError):
                await limiter.run(work, "refused")
            release.set()
        assert order == ["first", "queued"]
        assert limiter.waiting == 0
        assert await limiter.run(work, "free again") == "free again"
        limiter.close()

    anyio.run(main)


def test_a_cancelled_caller_keeps_its_slot_until_the_work_ends() -> None:
    async def main() -> None:
        limiter = InferenceLimiter(concurrency=1, queue=0)
        release = threading.Event()
        with anyio.move_on_after(0.1) as scope:
            await limiter.run(release.wait, 10.0)
        assert scope.cancelled_caught
        with pytest.raises(OverloadedError):  # the abandoned work still holds the only slot
            await limiter.run(time.sleep, 0)
        release.set()
        with anyio.fail_after(10.0):
            while True:
                try:
                    await limiter.run(time.sleep, 0)
                    break
                except OverloadedError:
                    await anyio.sleep(0.01)
        limiter.close()

    anyio.run(main)
