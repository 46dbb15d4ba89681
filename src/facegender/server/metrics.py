"""Prometheus metrics, one registry per app.

Each app (and so each uvicorn worker process) counts only its own requests: with several workers,
a scrape of ``/metrics`` sees the worker that answered it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facegender.results import Face

__all__ = ["Metrics", "MetricsMiddleware", "metrics_endpoint"]

_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_UNMATCHED_PATH: Final = "unmatched"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OTHER_METHOD: Final = "other"
_UNHANDLED_STATUS: Final = "500"


class Metrics:
    """The service's counters and histogram, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "facegender_http_requests",
            "HTTP requests answered, by route, method and status.",
            ["path", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "facegender_http_request_duration_seconds",
            "Time to answer an HTTP request, by route and method.",
            ["path", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.faces = Counter(
            "facegender_faces", "Faces found and classified, by class.", ["class"], registry=self.registry
        )
        self.errors = Counter(
            "facegender_errors",
            "Errors answered, by error code (each file of a batch counts).",
            ["code"],
            registry=self.registry,
        )

    def count_faces(self, faces: Iterable[Face]) -> None:
        """Count classified faces by their class."""
        for face in faces:
            self.faces.labels(face.label).inc()

    def count_error(self, code: str) -> None:
        """Count one error by its code."""
        self.errors.labels(code).inc()


def _route_path(routes: Iterable[BaseRoute], scope: Scope) -> str:
    """The path template of the route that answers ``scope`` (``/static`` for any static file), or ``unmatched``."""
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str) and route.matches(scope)[0] is not Match.NONE:
            return path
    return _UNMATCHED_PATH


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template, not its raw path (which would not be bounded)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _route_path(self.routes, scope)
        method = scope["method"] if scope["method"] in _METHODS else _OTHER_METHOD
        status = _UNHANDLED_STATUS  # an exception that escapes is answered by the outermost error handler

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.latency.labels(path, method).observe(time.perf_counter() - start)
            self.metrics.requests.labels(path, method, status).inc()


async def metrics_endpoint(request: Request) -> Response:
    """This process's metrics in the Prometheus text format."""
    metrics: Metrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
