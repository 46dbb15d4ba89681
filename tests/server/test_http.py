"""The HTTP service end to end: real uvicorn processes, real models, real photos."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_helpers import StartServer, assert_error, assert_gender_result, grey_png, in_process, post
from PIL import Image

from facegender import Settings
from facegender.server import create_app


def _assert_success(body: dict[str, Any]) -> None:
    assert_gender_result(body)
    assert isinstance(body["time_ms"], float)


@pytest.fixture(scope="module")
def portrait_bodies(client: httpx.Client, portraits: list[tuple[Path, str]]) -> list[dict[str, Any]]:
    bodies = []
    for path, _ in portraits:
        response = post(client, path.read_bytes())
        assert response.status_code == 200, f"{path.name}: {response.text}"
        bodies.append(response.json())
    return bodies


@pytest.mark.slow
def test_portraits_have_the_original_shape(portrait_bodies: list[dict[str, Any]]) -> None:
    for body in portrait_bodies:
        _assert_success(body)
        assert all(isinstance(face["head_turn"], float) for face in body["faces"])  # found faces have keypoints


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
        alias = post(client, path.read_bytes(), path="/predict")
        assert alias.status_code == 200, alias.text
        alias_body = alias.json()
        assert alias_body["predictions"] == body["predictions"]
        assert alias_body["faces"] == body["faces"]


@pytest.mark.slow
def test_no_face_is_422(client: httpx.Client) -> None:
    assert_error(post(client, grey_png()), 422, "no_face")


@pytest.mark.slow
def test_non_image_is_400(client: httpx.Client) -> None:
    assert_error(post(client, b"this is not an image at all"), 400, "bad_image")


@pytest.mark.slow
def test_unsupported_format_is_415(client: httpx.Client) -> None:
    assert_error(post(client, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), 415, "unsupported_format")


@pytest.mark.slow
def test_wrong_field_name_is_400(client: httpx.Client) -> None:
    assert_error(post(client, grey_png(), field="photo"), 400, "missing_image")
    assert_error(client.post("/predict"), 400, "missing_image")


@pytest.mark.slow
def test_oversize_upload_is_413(small_upload_server: tuple[str, int], portraits: list[tuple[Path, str]]) -> None:
    url, limit = small_upload_server
    photo = portraits[0][0].read_bytes()
    assert len(photo) > limit
    small = grey_png()
    assert len(small) <= limit
    with httpx.Client(base_url=url, timeout=60.0) as client:
        assert_error(post(client, photo), 413, "image_too_large")
        assert_error(post(client, small), 422, "no_face")


@pytest.mark.slow
def test_detect_false_classifies_the_whole_chip(client: httpx.Client, utkface_chip: Path) -> None:
    with Image.open(utkface_chip) as chip:
        width, height = chip.size
    response = post(client, utkface_chip.read_bytes(), detect="false")
    assert response.status_code == 200, response.text
    body = response.json()
    _assert_success(body)
    assert body["image"] == {"width": width, "height": height}
    assert len(body["faces"]) == 1
    assert body["faces"][0]["box"] == {"left": 0, "top": 0, "width": width, "height": height}
    assert body["faces"][0]["detection_score"] == 1.0
    assert body["faces"][0]["head_turn"] is None  # no keypoints without the detector


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
    batch = schema["paths"]["/api/gender/batch"]["post"]["responses"]
    assert batch["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/BatchResponse")
    assert {"400", "413", "503"} <= set(batch)
    assert "text/plain" in schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "/" not in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_not_ready_before_the_models_load() -> None:
    app = create_app(Settings())  # no lifespan has run, so no models
    assert_error(in_process(app, lambda client: client.get("/ready")), 503, "model_unavailable")


def test_unexpected_failure_is_503_without_details(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Settings(threads=1))

    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    async def call(client: httpx.AsyncClient) -> httpx.Response:
        async with app.router.lifespan_context(app):
            monkeypatch.setattr(app.state.facegender, "predict_batch", explode)
            return await client.post("/api/gender", files={"image": ("grey.png", grey_png(), "image/png")})

    response = in_process(app, call)
    assert_error(response, 503, "inference_failed")
    assert "secret" not in response.text


def test_upside_down_photos_are_read_upright_when_the_service_turns_faces(
    start_server: StartServer, portraits: list[tuple[Path, str]]
) -> None:
    photos = []
    for path, label in portraits:
        with Image.open(path) as image:
            buffer = io.BytesIO()
            image.convert("RGB").rotate(180).save(buffer, "JPEG", quality=92)
        photos.append((buffer.getvalue(), label))
    with start_server(FACEGENDER_TURN_FACES_UPRIGHT="true") as server, httpx.Client(base_url=server.url) as client:
        labels = [post(client, photo).json()["predictions"]["class"] for photo, _ in photos]
    right = sum(got == label for got, (_, label) in zip(labels, photos, strict=True))
    assert right >= 0.9 * len(photos)


def test_the_detector_runs_a_photo_s_passes_side_by_side_only_while_no_request_waits() -> None:
    app = create_app(Settings())

    async def while_served() -> list[bool]:
        async with app.router.lifespan_context(app):
            side_by_side = app.state.facegender.detector._side_by_side_while
            seen = [side_by_side()]
            app.state.limiter._waiting = 1  # as while a request waits for an inference slot
            seen.append(side_by_side())
            app.state.limiter._waiting = 0
            return seen

    assert asyncio.run(while_served()) == [True, False]
