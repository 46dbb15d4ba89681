"""Bounded inference: at most so many model runs at once per worker, and a bounded queue in front of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import anyio

from facegender.errors import OverloadedError

__all__ = ["RETRY_AFTER_S", "InferenceLimiter"]

RETRY_AFTER_S: Final = 1
"""The ``Retry-After`` of an ``overloaded`` answer, in seconds."""


class InferenceLimiter:
    """``concurrency`` inferences at a time; up to ``queue`` more wait, and any beyond that fail at once.

    One limiter belongs to one app, so to one event loop: the check and the count need no lock because nothing
    awaits between them.
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        self._slots = anyio.Semaphore(concurrency)
        self._max_waiting = queue
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return self._waiting

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one inference slot; raise :class:`OverloadedError` without waiting if the queue is full."""
        if self._slots.value == 0 and self._waiting >= self._max_waiting:
            raise OverloadedError("the server is busy; try again shortly")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
