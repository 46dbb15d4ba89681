"""The load benchmarks' HTTP client: photos POSTed as multipart form data, with as little work as it can.

The clients run on the same cores as the server they measure, so every millisecond of their CPU is taken
from the server. With httpx the load check's clients spent about 1.5 ms of CPU per request here (building the
form, the connection pool, parsing); with the standard library's ``http.client`` and each photo's form built
once, about 0.65 (``python -m benchmarks.load`` prints it).
"""

from __future__ import annotations

import http.client
import threading
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["FormBody", "FormClient", "NoAnswerError", "form_body"]

_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
"""What a reused keep-alive connection that the server has closed meanwhile raises."""


class NoAnswerError(Exception):
    """No HTTP answer: the connection failed or the answer could not be read."""


@dataclass(frozen=True)
class FormBody:
    """A ready-to-send multipart body and its content type."""

    data: bytes
    content_type: str


def form_body(*, field: str, filename: str, data: bytes, content_type: str = "image/jpeg") -> FormBody:
    """``data`` as the one file of a ``multipart/form-data`` body under ``field``, as a browser sends it."""
    boundary = f"facegender-bench-{uuid.uuid4().hex}"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return FormBody(head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}")


class FormClient:
    """POSTs form bodies from any number of threads, each over its own keep-alive connection."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"an http:// URL with a host is needed, not {url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []

    def post(self, path: str, body: FormBody) -> tuple[int, bytes]:
        """The status and body of the answer to ``body`` POSTed to ``path``; :class:`NoAnswerError` if none came."""
        reused: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        try:
            if reused is not None:
                try:
                    return self._send(reused, path, body)
                except _STALE_CONNECTION:
                    pass  # the server closed it while it lay idle: once more, on a new connection
            return self._send(self._connect(), path, body)
        except (OSError, http.client.HTTPException) as error:
            raise NoAnswerError(f"{type(error).__name__}: {error}") from error

    def _send(self, connection: http.client.HTTPConnection, path: str, body: FormBody) -> tuple[int, bytes]:
        try:
            connection.request("POST", path, body=body.data, headers={"Content-Type": body.content_type})
            response = connection.getresponse()
            return response.status, response.read()
        except Exception:
            connection.close()
            self._local.connection = None
            raise

    def _connect(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    def __enter__(self) -> FormClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
