"""The HTTP service end to end: real uvicorn processes, real models, real photos."""

from __future__ import annotations

import io
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from facegender import Settings
from facegender.server import create_app

META_KEYS = {"description", "language", "library", "main", "programmer"}
CLASSES = {"female": 0, "male": 1}


def _post(
    client: httpx.Client, data: bytes, *, path: str = "/api/gender", field: str = "image", **params: str
) -> httpx.Response:
    return client.post(path, files={field: ("upload", data, "application/octet-stream")}, params=params)


def _grey_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
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


def _assert_prediction(prediction: dict[str, Any]) -> None:
    assert prediction["class"] in CLASSES
    assert isinstance(prediction["label"], int)
    assert prediction["label"] == CLASSES[prediction["class"]]
    assert isinstance(prediction["probability"], float)
    assert 0.0 <= prediction["probability"] <= 1.0
    _assert_class_probabilities(prediction["predictions"])
    assert prediction["probability"] == prediction["predictions"][prediction["label"]]["probability"]


def _assert_success(body: dict[str, Any]) -> None:
    assert body["success"] is True
    top = body["predictions"]
    _assert_prediction(top)
    assert set(top["meta"]) == META_KEYS
    assert all(isinstance(value, str) and value for value in top["meta"].values())
    assert body["faces"]
    for face in body["faces"]:
        _assert_prediction(face)
        assert set(face["box"]) == {"left", "top", "width", "height"}
        assert 0.0 <= face["detection_score"] <= 1.0
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
    assert isinstance(body["time_ms"], float)


@pytest.fixture(scope="module")
def portrait_bodies(client: httpx.Client, portraits: list[tuple[Path, str]]) -> list[dict[str, Any]]:
    bodies = []
    for path, _ in portraits:
        response = _post(client, path.read_bytes())
        assert response.status_code == 200, f"{path.name}: {response.text}"
        bodies.append(response.json())
    return bodies


@pytest.mark.slow
def test_portraits_have_the_original_shape(portrait_bodies: list[dict[str, Any]]) -> None:
    for body in portrait_bodies:
        _assert_success(body)


@pytest.mark.slow
def test_most_portraits_get_their_label(
    portraits: list[tuple[Path, str]], portrait_bodies: list[dict[str, Any]]
) -> None:
    predicted = [body["predictions"]["class"] for body in portrait_bodies]
    correct = sum(label == guess for (_, label), guess in zip(portraits, predicted, strict=True))
    assert correct >= 8, f"{correct} of {len(portraits)} portraits classified as labelled"


@pytest.mark.slow
def test_predict_alias_matches(
    client: httpx.Client, portraits: list[tuple[Path, str]], portrait_bodies: list[dict[str, Any]]
) -> None:
    for (path, _), body in zip(portraits[::3], portrait_bodies[::3], strict=True):
        alias = _post(client, path.read_bytes(), path="/predict")
        assert alias.status_code == 200, alias.text
        alias_body = alias.json()
        assert alias_body["predictions"] == body["predictions"]
        assert alias_body["faces"] == body["faces"]


@pytest.mark.slow
def test_no_face_is_422(client: httpx.Client) -> None:
    _assert_error(_post(client, _grey_png()), 422, "no_face")


@pytest.mark.slow
def test_non_image_is_400(client: httpx.Client) -> None:
    _assert_error(_post(client, b"this is not an image at all"), 400, "bad_image")


@pytest.mark.slow
def test_unsupported_format_is_415(client: httpx.Client) -> None:
    _assert_error(_post(client, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), 415, "unsupported_format")


@pytest.mark.slow
def test_wrong_field_name_is_400(client: httpx.Client) -> None:
    _assert_error(_post(client, _grey_png(), field="photo"), 400, "missing_image")
    _assert_error(client.post("/predict"), 400, "missing_image")


@pytest.mark.slow
def test_oversize_upload_is_413(small_upload_server: tuple[str, int], portraits: list[tuple[Path, str]]) -> None:
    url, limit = small_upload_server
    photo = portraits[0][0].read_bytes()
    assert len(photo) > limit
    small = _grey_png()
    assert len(small) <= limit
    with httpx.Client(base_url=url, timeout=60.0) as client:
        _assert_error(_post(client, photo), 413, "image_too_large")
        _assert_error(_post(client, small), 422, "no_face")


@pytest.mark.slow
def test_detect_false_classifies_the_whole_chip(client: httpx.Client, utkface_chip: Path) -> None:
    with Image.open(utkface_chip) as chip:
        width, height = chip.size
    response = _post(client, utkface_chip.read_bytes(), detect="false")
    assert response.status_code == 200, response.text
    body = response.json()
    _assert_success(body)
    assert body["image"] == {"width": width, "height": height}
    assert len(body["faces"]) == 1
    assert body["faces"][0]["box"] == {"left": 0, "top": 0, "width": width, "height": height}
    assert body["faces"][0]["detection_score"] == 1.0


@pytest.mark.slow
def test_health_and_ready(client: httpx.Client, portrait_bodies: list[dict[str, Any]]) -> None:
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model": portrait_bodies[0]["model"]}


@pytest.mark.slow
def test_cors(client: httpx.Client) -> None:
    origin = "https://example.org"
    simple = client.get("/health", headers={"Origin": origin})
    assert simple.headers["access-control-allow-origin"] == "*"
    preflight = client.options("/api/gender", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in preflight.headers


@pytest.mark.slow
def test_openapi_describes_the_responses(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/api/gender"]["post"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/GenderResponse")
    assert {"400", "413", "415", "422", "503"} <= set(responses)
    assert "class" in schema["components"]["schemas"]["ClassProbability"]["properties"]
    assert client.get("/docs").status_code == 200


def _in_process(app: FastAPI, call: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await call(client)

    return anyio.run(run)


def test_not_ready_before_the_models_load() -> None:
    app = create_app(Settings())  # no lifespan has run, so no models
    _assert_error(_in_process(app, lambda client: client.get("/ready")), 503, "model_unavailable")


def test_unexpected_failure_is_503_without_details(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Settings(threads=1))

    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    async def call(client: httpx.AsyncClient) -> httpx.Response:
        async with app.router.lifespan_context(app):
            monkeypatch.setattr(app.state.facegender, "predict", explode)
            return await client.post("/api/gender", files={"image": ("grey.png", _grey_png(), "image/png")})

    response = _in_process(app, call)
    _assert_error(response, 503, "inference_failed")
    assert "secret" not in response.text
