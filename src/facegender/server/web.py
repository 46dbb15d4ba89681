"""The browser page: ``GET /`` and its script and style under ``/static``, with a strict Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["CONTENT_SECURITY_POLICY", "WEB_DIR", "add_web_routes"]

WEB_DIR: Final = Path(__file__).resolve().parents[1] / "web"
"""``facegender/web``: ``index.html`` and the ``static`` folder it loads."""

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The other security headers are added to every response by RequestContextMiddleware.
_PAGE_HEADERS: Final = {"Content-Security-Policy": CONTENT_SECURITY_POLICY}


async def index() -> FileResponse:
    """The page that sends a photo to ``/api/gender`` and draws the faces found."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


def add_web_routes(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files at ``/static``; neither is part of the API schema."""
    app.add_api_route("/", index, methods=["GET"], response_class=FileResponse, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
