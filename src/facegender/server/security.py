"""Request ids, security headers, the access log and optional API keys, as plain ASGI middleware."""

from __future__ import annotations

import hmac
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any, Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facegender.server.metrics import Metrics
from facegender.server.schemas import error_response

__all__ = [
    "PUBLIC_PATHS",
    "REQUEST_ID_HEADER",
    "ApiKeyMiddleware",
    "JsonLogFormatter",
    "RequestContextMiddleware",
    "configure_access_log",
]

REQUEST_ID_HEADER: Final = "X-Request-ID"
PUBLIC_PATHS: Final = frozenset({"/", "/health", "/ready"})
"""Paths answered without an API key: liveness, readiness and the page (whose files under ``/static`` too)."""
_STATIC_PREFIX: Final = "/static/"
_SAFE_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_ACCESS_FIELDS: Final = ("request_id", "method", "path", "status", "duration_ms", "request_bytes")
_HANDLER_NAME: Final = "facegender-access"

access_logger = logging.getLogger("facegender.access")


def _is_page(path: str) -> bool:
    return path == "/" or path.startswith(_STATIC_PREFIX)


def _request_id(headers: Headers) -> str:
    """The client's ``X-Request-ID`` if it is a short safe token, otherwise a fresh one."""
    supplied = headers.get(REQUEST_ID_HEADER, "")
    return supplied if _SAFE_REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex


class RequestContextMiddleware:
    """Give each request an id, add the security headers to its response and write one access log record.

    The record holds the request id, method, path (never the query), status, duration and the number of body
    bytes read; never the body itself, so no image bytes or file names.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope["path"]
        raw_path: bytes | None = scope.get("raw_path")  # still percent-encoded: no control characters in the log
        logged_path = path if raw_path is None else raw_path.decode("latin-1")
        status = 500  # an exception that escapes is answered by the outermost error handler
        body_bytes = 0

        async def counting_receive() -> Message:
            nonlocal body_bytes
            message = await receive()
            if message["type"] == "http.request":
                body_bytes += len(message.get("body", b""))
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                for name, value in _SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not _is_page(path):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, counting_receive, send_with_headers)
        finally:
            fields = {
                "request_id": request_id,
                "method": scope["method"],
                "path": logged_path,
                "status": status,
                "duration_ms": round((time.perf_counter() - start) * 1000.0, 2),
                "request_bytes": body_bytes,
            }
            access_logger.info(" ".join(f"{name}=%s" for name in _ACCESS_FIELDS), *fields.values(), extra=fields)


def _presented_keys(headers: Headers) -> list[str]:
    keys = []
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    if api_key := headers.get("X-API-Key", ""):
        keys.append(api_key)
    return keys


class ApiKeyMiddleware:
    """Refuse requests without a configured key (``Authorization: Bearer`` or ``X-API-Key``) with 401.

    Liveness, readiness and the page stay open. Every presented key is compared with every configured key in
    constant time (``hmac.compare_digest``), without stopping at the first match.
    """

    def __init__(self, app: ASGIApp, keys: Sequence[str], metrics: Metrics) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.metrics = metrics

    def _authorized(self, headers: Headers) -> bool:
        matched = False
        for presented in _presented_keys(headers):
            candidate = presented.encode()
            for key in self.keys:
                matched |= hmac.compare_digest(candidate, key)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not self.keys
            or path in PUBLIC_PATHS
            or _is_page(path)
            or self._authorized(Headers(scope=scope))
        ):
            await self.app(scope, receive, send)
            return
        self.metrics.count_error("unauthorized")
        response = error_response(401, "unauthorized", "send a valid API key", headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the access fields it has, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({name: getattr(record, name) for name in _ACCESS_FIELDS if hasattr(record, name)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_access_log(json_lines: bool) -> None:
    """Send the ``facegender`` loggers, with the access log at INFO, to stderr; as JSON lines if ``json_lines``.

    Only the ``facegender`` loggers are touched, so uvicorn's own logging stays as it configured it. Calling
    this again replaces the handler it added rather than adding another.
    """
    package = logging.getLogger("facegender")
    for handler in [handler for handler in package.handlers if handler.get_name() == _HANDLER_NAME]:
        package.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        JsonLogFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    package.addHandler(handler)
    package.propagate = False
    access_logger.setLevel(logging.INFO)
