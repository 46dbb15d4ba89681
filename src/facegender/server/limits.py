"""Limits that keep one worker healthy: bounded inference, request body caps and a deadline per request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facegender.errors import (
    FaceGenderError,
    ImageTooLargeError,
    OverloadedError,
    RequestTimeoutError,
    UploadTimeoutError,
)
from facegender.server.metrics import Metrics
from facegender.server.schemas import error_response

__all__ = ["MULTIPART_OVERHEAD_BYTES", "RETRY_AFTER_S", "InferenceLimiter", "RequestLimitsMiddleware", "retry_headers"]

RETRY_AFTER_S: Final = 1
"""The ``Retry-After`` of an ``overloaded`` or ``timeout`` answer, in seconds."""
MULTIPART_OVERHEAD_BYTES: Final = 64 * 1024
"""Room for multipart boundaries, part headers and small form fields on top of the files themselves."""

_Result = TypeVar("_Result")


def retry_headers(error: FaceGenderError) -> dict[str, str]:
    """``Retry-After`` for the errors that a later try may not meet (busy, or out of time); else none."""
    if isinstance(error, OverloadedError | RequestTimeoutError):
        return {"Retry-After": str(RETRY_AFTER_S)}
    return {}


class InferenceLimiter:
    """``concurrency`` inferences at a time on the limiter's own threads; ``queue`` more may wait, others fail.

    The threads are fixed for the life of the worker: a pool that starts and retires threads under changing
    load leaves each new thread's memory arenas behind, and resident memory creeps up.

    One limiter belongs to one app, so to one event loop: the check and the count need no lock because nothing
    awaits between them.
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        self._slots = anyio.Semaphore(concurrency)
        self._max_waiting = queue
        self._waiting = 0
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="facegender-inference")

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return self._waiting

    async def run(self, function: Callable[..., _Result], /, *args: object) -> _Result:
        """``function(*args)`` on an inference thread once a slot is free.

        Raises :class:`OverloadedError` at once if every slot is busy and the queue is full. If the caller is
        cancelled (a request deadline), the work still runs to its end and only then gives its slot back, so
        slots always match the threads actually busy.
        """
        if self._slots.value == 0 and self._waiting >= self._max_waiting:
            raise OverloadedError("the server is busy; try again shortly")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return await asyncio.shield(future)

    def close(self) -> None:
        """Wait for running work to finish and stop the threads."""
        self._executor.shutdown(wait=True)


class _BodyTooLargeError(Exception):
    """Raised into the app by the body reader once the body passes its cap."""


class RequestLimitsMiddleware:
    """Cap each request's body and answer each request within ``timeout_s``.

    A body over its route's cap is refused with 413 ``image_too_large`` before it is read when it declares its
    ``Content-Length``, and as soon as the cap is passed when it is streamed. A request not answered in time
    gets 408 ``upload_timeout`` while its body is still arriving, else 503 ``timeout``; the inference it started
    finishes in the background (see :meth:`InferenceLimiter.run`).
    """

    def __init__(
        self, app: ASGIApp, *, body_limits: Mapping[str, int], default_limit: int, timeout_s: float, metrics: Metrics
    ) -> None:
        self.app = app
        self.body_limits = dict(body_limits)
        self.default_limit = default_limit
        self.timeout_s = timeout_s
        self.metrics = metrics

    async def _refuse(self, error: FaceGenderError, scope: Scope, receive: Receive, send: Send) -> None:
        self.metrics.count_error(error.code)
        headers = retry_headers(error)
        if error.http_status in (408, 413):  # the rest of the body is not read: the connection cannot be reused
            headers["Connection"] = "close"
        await error_response(error.http_status, error.code, error.message, headers=headers)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.body_limits.get(scope["path"], self.default_limit)
        too_large = f"the request body is larger than the limit of {limit:,} bytes"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(ImageTooLargeError(too_large), scope, receive, send)
            return

        received = 0
        body_complete = False
        over_limit = False
        response_started = False

        async def capped_receive() -> Message:
            nonlocal received, body_complete, over_limit
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_complete = not message.get("more_body", False)
                if received > limit:
                    over_limit = True
                    raise _BodyTooLargeError
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            if over_limit:  # the app's own answer to a cut-off body (e.g. a parse error) is replaced by the 413
                return
            response_started |= message["type"] == "http.response.start"
            await send(message)

        try:
            with anyio.fail_after(self.timeout_s):
                await self.app(scope, capped_receive, tracked_send)
        except TimeoutError:
            if response_started:
                raise
            late: FaceGenderError = (
                RequestTimeoutError(f"no answer within {self.timeout_s:g} s; try again later")
                if body_complete
                else UploadTimeoutError(f"the request body did not arrive within {self.timeout_s:g} s")
            )
            await self._refuse(late, scope, receive, send)
            return
        except Exception:  # _BodyTooLargeError, or what the app made of it
            if not over_limit:
                raise
        if over_limit:
            await self._refuse(ImageTooLargeError(too_large), scope, receive, send)
