"""``GET /metrics``: Prometheus counters of requests, latency, faces and errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from http_helpers import grey_png, in_process, post
from prometheus_client.parser import text_string_to_metric_families

from facegender import Settings
from facegender.server import create_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.slow
def test_requests_faces_and_errors_are_counted(client: httpx.Client, portrait_path: Path) -> None:
    before = _scrape(client)
    ok = post(client, portrait_path.read_bytes())
    assert ok.status_code == 200
    faces = ok.json()["faces"]
    assert post(client, grey_png()).status_code == 422
    assert post(client, grey_png()).status_code == 422
    assert client.get("/api/gender").status_code == 405
    after = _scrape(client)

    def added(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    gender = {"path": "/api/gender", "method": "POST"}
    assert added("facegender_http_requests_total", **gender, status="200") == 1
    assert added("facegender_http_requests_total", **gender, status="422") == 2
    assert added("facegender_http_requests_total", path="/api/gender", method="GET", status="405") == 1
    assert added("facegender_http_request_duration_seconds_count", **gender) == 3
    assert added("facegender_http_request_duration_seconds_bucket", **gender, le="+Inf") == 3
    assert added("facegender_http_request_duration_seconds_sum", **gender) > 0
    for label in ("female", "male"):
        assert added("facegender_faces_total", **{"class": label}) == sum(face["class"] == label for face in faces)
    assert added("facegender_errors_total", code="no_face") == 2
    assert added("facegender_errors_total", code="method_not_allowed") == 1
    assert _value(after, "facegender_http_requests_total", path="/metrics", method="GET", status="200") >= 1


def test_each_app_has_its_own_registry() -> None:
    first, second = create_app(Settings()), create_app(Settings())
    for _ in range(2):
        assert in_process(first, lambda client: client.get("/health")).status_code == 200
    health = {"path": "/health", "method": "GET", "status": "200"}
    first_samples = _samples(in_process(first, lambda client: client.get("/metrics")).text)
    second_samples = _samples(in_process(second, lambda client: client.get("/metrics")).text)
    assert _value(first_samples, "facegender_http_requests_total", **health) == 2
    assert _value(second_samples, "facegender_http_requests_total", **health) == 0


def test_unknown_paths_share_one_label() -> None:
    app = create_app(Settings())
    for path in ("/nothing-here", "/or/here"):
        assert in_process(app, lambda client, path=path: client.get(path)).status_code == 404
    samples = _samples(in_process(app, lambda client: client.get("/metrics")).text)
    assert _value(samples, "facegender_http_requests_total", path="unmatched", method="GET", status="404") == 2
    assert not any(("path", "/nothing-here") in labels for _, labels in samples)
