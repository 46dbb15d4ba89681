"""API keys, security headers, request ids, the access log and bounded inference, against real uvicorn processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_helpers import Server, StartServer, assert_error, grey_png, post

KEYS = ["first-key-0123456789abcdef", "second-key-fedcba9876543210"]
SECRET_FILENAME = "secret-name-123.jpg"
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}
LOG_TIMEOUT_S = 10.0
OVERLOAD_REQUESTS = 12
OVERLOAD_ROUNDS = 3


@pytest.fixture(scope="module")
def keyed(start_server: StartServer) -> Iterator[httpx.Client]:
    """A client without credentials for a server that requires one of ``KEYS``."""
    with start_server(FACEGENDER_API_KEYS=json.dumps(KEYS)) as server, httpx.Client(base_url=server.url) as client:
        yield client


@pytest.fixture(scope="module")
def json_logging(start_server: StartServer) -> Iterator[Server]:
    with start_server(FACEGENDER_LOG_JSON="true") as server:
        yield server


@pytest.fixture(scope="module")
def large_portrait(portraits: list[tuple[Path, str]]) -> bytes:
    """The largest of the test portraits: the slowest to run."""
    return max((path.read_bytes() for path, _ in portraits), key=len)


def _assert_unauthorized(response: httpx.Response) -> None:
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


def _assert_security_headers(response: httpx.Response, *, cached: bool = False) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name
    if cached:
        assert "cache-control" not in response.headers
    else:
        assert response.headers["cache-control"] == "no-store"


def _access_records(server: Server, request_id: str) -> list[dict[str, Any]]:
    """The JSON access records of ``request_id``, waiting a little for them to be written."""
    deadline = time.monotonic() + LOG_TIMEOUT_S
    while True:
        records = []
        for line in server.log().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("request_id") == request_id:
                    records.append(record)
        if records or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


@pytest.mark.slow
def test_without_keys_no_credentials_are_needed(client: httpx.Client) -> None:
    assert_error(post(client, grey_png()), 422, "no_face")
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").status_code == 200


@pytest.mark.slow
def test_with_keys_a_request_without_one_is_401(keyed: httpx.Client) -> None:
    _assert_unauthorized(post(keyed, grey_png()))
    _assert_unauthorized(post(keyed, grey_png(), path="/api/gender/batch", field="images"))
    for path in ("/metrics", "/openapi.json", "/docs"):
        _assert_unauthorized(keyed.get(path))


@pytest.mark.slow
def test_with_keys_a_wrong_key_is_401(keyed: httpx.Client) -> None:
    wrong = KEYS[0][:-1]
    for headers in (
        {"Authorization": f"Bearer {wrong}"},
        {"X-API-Key": wrong},
        {"Authorization": f"Basic {KEYS[0]}"},
        {"Authorization": "Bearer"},
        {"X-API-Key": ""},
    ):
        _assert_unauthorized(post(keyed, grey_png(), headers=headers))


@pytest.mark.slow
def test_with_keys_bearer_and_x_api_key_both_work(keyed: httpx.Client) -> None:
    for headers in (
        {"Authorization": f"Bearer {KEYS[0]}"},
        {"authorization": f"bearer {KEYS[1]}"},
        {"X-API-Key": KEYS[1]},
    ):
        assert_error(post(keyed, grey_png(), headers=headers), 422, "no_face")
        assert keyed.get("/metrics", headers=headers).status_code == 200
    metrics = keyed.get("/metrics", headers={"X-API-Key": KEYS[0]}).text
    assert 'facegender_errors_total{code="unauthorized"}' in metrics


@pytest.mark.slow
def test_with_keys_health_ready_and_the_page_stay_open(keyed: httpx.Client) -> None:
    assert keyed.get("/health").json() == {"status": "ok"}
    assert keyed.get("/ready").json()["status"] == "ready"
    assert keyed.get("/").status_code == 200
    assert keyed.get("/static/app.js").status_code == 200


@pytest.mark.slow
def test_with_keys_cors_preflight_needs_no_key(keyed: httpx.Client) -> None:
    preflight = keyed.options(
        "/api/gender",
        headers={
            "Origin": "https://example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"


@pytest.mark.slow
def test_security_headers_on_every_response(client: httpx.Client, keyed: httpx.Client) -> None:
    _assert_security_headers(client.get("/health"))
    _assert_security_headers(client.get("/metrics"))
    no_face = post(client, grey_png())
    assert no_face.status_code == 422
    _assert_security_headers(no_face)
    not_found = client.get("/no/such/path")
    assert_error(not_found, 404, "not_found")
    _assert_security_headers(not_found)
    _assert_security_headers(post(keyed, grey_png()))
    page = client.get("/")
    _assert_security_headers(page, cached=True)
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


@pytest.mark.slow
def test_request_id_is_generated_or_echoed(client: httpx.Client) -> None:
    generated = {client.get("/health").headers["x-request-id"] for _ in range(3)}
    assert len(generated) == 3
    assert all(len(request_id) == 32 and int(request_id, 16) >= 0 for request_id in generated)
    assert client.get("/health", headers={"X-Request-ID": "trace-1.A_b"}).headers["x-request-id"] == "trace-1.A_b"
    assert post(client, grey_png(), headers={"X-Request-ID": "err-42"}).headers["x-request-id"] == "err-42"
    for unsafe in ("has space", "x" * 65, "semi;colon", "<script>"):
        replaced = client.get("/health", headers={"X-Request-ID": unsafe}).headers["x-request-id"]
        assert replaced != unsafe
        assert len(replaced) == 32


@pytest.mark.slow
def test_json_access_log_has_the_request_and_no_file_name(json_logging: Server, large_portrait: bytes) -> None:
    request_id = "upload-trace-7"
    with httpx.Client(base_url=json_logging.url, timeout=60.0) as session:
        response = post(session, large_portrait, filename=SECRET_FILENAME, headers={"X-Request-ID": request_id})
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == request_id
        assert_error(post(session, b"not an image", filename=SECRET_FILENAME), 400, "bad_image")
    (record,) = _access_records(json_logging, request_id)
    assert record["logger"] == "facegender.access"
    assert (record["method"], record["path"], record["status"]) == ("POST", "/api/gender", 200)
    assert record["request_bytes"] > len(large_portrait)
    assert isinstance(record["duration_ms"], float)
    assert record["duration_ms"] > 0.0
    log = json_logging.log()
    assert "secret-name-123" not in log
    assert "Traceback" not in log


@pytest.mark.slow
def test_a_full_queue_is_503_overloaded_and_the_server_recovers(
    start_server: StartServer, large_portrait: bytes
) -> None:
    env = {"FACEGENDER_MAX_CONCURRENT_INFERENCES": "1", "FACEGENDER_MAX_QUEUE": "1", "FACEGENDER_MIN_FACE_SIZE": "24"}
    with start_server(**env) as server, httpx.Client(base_url=server.url, timeout=120.0) as session:
        responses: list[httpx.Response] = []
        for _ in range(OVERLOAD_ROUNDS):  # one round is enough unless the machine is far slower than the server
            with ThreadPoolExecutor(max_workers=OVERLOAD_REQUESTS) as pool:
                responses += pool.map(lambda _: post(session, large_portrait), range(OVERLOAD_REQUESTS))
            if any(response.status_code == 503 for response in responses):
                break
        statuses = sorted(response.status_code for response in responses)
        assert set(statuses) <= {200, 503}, statuses
        assert 503 in statuses, statuses
        assert 200 in statuses, statuses
        for response in responses:
            if response.status_code == 503:
                assert_error(response, 503, "overloaded")
                assert response.headers["retry-after"] == "1"
                assert response.headers["cache-control"] == "no-store"
        after = post(session, large_portrait)
        assert after.status_code == 200, after.text
        assert session.get("/ready").status_code == 200
