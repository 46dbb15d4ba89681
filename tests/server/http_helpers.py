"""Helpers shared by the service tests: requests, test images and checks of the response bodies."""

from __future__ import annotations

import io
import math
import subprocess
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from fastapi import FastAPI
from PIL import Image

__all__ = [
    "Server",
    "StartServer",
    "assert_error",
    "assert_gender_result",
    "assert_prediction",
    "grey_png",
    "in_process",
    "post",
]

META_KEYS = {"description", "language", "library", "main", "programmer"}
CLASSES = {"female": 0, "male": 1}


@dataclass(frozen=True)
class Server:
    """A running server process: its base URL, the file that gets its stdout and stderr, and the process."""

    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        """Everything the server has written so far."""
        return self.log_path.read_text(errors="replace")


StartServer = Callable[..., AbstractContextManager[Server]]
"""The ``start_server`` fixture: ``start_server(FACEGENDER_X="…", …)`` runs a server with those variables set.

``start_cli_server`` has the same signature and runs ``facegender serve`` instead of uvicorn directly."""


def post(
    client: httpx.Client,
    data: bytes,
    *,
    path: str = "/api/gender",
    field: str = "image",
    filename: str = "upload",
    headers: dict[str, str] | None = None,
    **params: str,
) -> httpx.Response:
    """POST ``data`` as one multipart file field."""
    files = {field: (filename, data, "application/octet-stream")}
    return client.post(path, files=files, params=params, headers=headers)


def grey_png(size: tuple[int, int] = (300, 300)) -> bytes:
    """A readable PNG without a face, ``size`` as (width, height)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The response is the one error shape with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body == {"success": False, "error": {"code": code, "message": body["error"]["message"]}, "faces": []}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert "Traceback" not in response.text


def _assert_class_probabilities(entries: list[dict[str, Any]]) -> None:
    assert [(entry["class"], entry["label"]) for entry in entries] == [("female", 0), ("male", 1)]
    for entry in entries:
        assert isinstance(entry["probability"], float)
        assert 0.0 <= entry["probability"] <= 1.0
    assert math.isclose(sum(entry["probability"] for entry in entries), 1.0, abs_tol=1e-3)


def assert_prediction(prediction: dict[str, Any]) -> None:
    """A class, its label and probability, and both class probabilities, consistent with each other."""
    assert prediction["class"] in CLASSES
    assert isinstance(prediction["label"], int)
    assert prediction["label"] == CLASSES[prediction["class"]]
    assert isinstance(prediction["probability"], float)
    assert 0.0 <= prediction["probability"] <= 1.0
    _assert_class_probabilities(prediction["predictions"])
    assert prediction["probability"] == prediction["predictions"][prediction["label"]]["probability"]


def assert_gender_result(body: dict[str, Any]) -> None:
    """One photo's successful body: the original keys, then every face, largest first."""
    assert body["success"] is True
    top = body["predictions"]
    assert_prediction(top)
    assert set(top["meta"]) == META_KEYS
    assert all(isinstance(value, str) and value for value in top["meta"].values())
    assert body["faces"]
    for face in body["faces"]:
        assert_prediction(face)
        assert set(face["box"]) == {"left", "top", "width", "height"}
        assert 0.0 <= face["detection_score"] <= 1.0
        assert face["head_turn"] is None or -90.0 <= face["head_turn"] <= 90.0
    areas = [face["box"]["width"] * face["box"]["height"] for face in body["faces"]]
    assert areas == sorted(areas, reverse=True)
    largest = body["faces"][0]
    assert {key: top[key] for key in ("class", "label", "probability", "predictions")} == {
        key: largest[key] for key in ("class", "label", "probability", "predictions")
    }
    assert body["image"]["width"] > 0
    assert body["image"]["height"] > 0
    assert body["model"]["name"]
    assert body["model"]["version"]


def in_process(app: FastAPI, call: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]) -> httpx.Response:
    """Run ``call`` against ``app`` without a server (and without its lifespan unless ``call`` enters it)."""

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await call(client)

    return anyio.run(run)
