"""``POST /api/gender/batch`` end to end: one entry per file, in order, each with its own result or error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from http_helpers import assert_error, assert_gender_result, grey_png, in_process, post

from facegender.server.app import create_app
from facegender.settings import Settings

BATCH = "/api/gender/batch"
DEFAULT_MAX_BATCH_FILES = 16


def _post_batch(client: httpx.Client, *files: bytes) -> httpx.Response:
    return client.post(
        BATCH, files=[("images", (f"file{i}", data, "application/octet-stream")) for i, data in enumerate(files)]
    )


def _error_entry(index: int, status: int, code: str, entry: dict[str, object]) -> dict[str, object]:
    """``entry`` as it should be, keeping only its message, which tests do not pin."""
    error = entry["error"]
    assert isinstance(error, dict)
    assert isinstance(error["message"], str)
    assert error["message"]
    return {
        "success": False,
        "error": {"code": code, "message": error["message"]},
        "faces": [],
        "index": index,
        "status": status,
    }


@pytest.mark.slow
def test_each_file_gets_its_own_entry_in_order(client: httpx.Client, portrait_path: Path) -> None:
    photo = portrait_path.read_bytes()
    response = _post_batch(client, photo, b"just some text, not an image", grey_png())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "results", "time_ms"}
    assert body["success"] is True
    assert isinstance(body["time_ms"], float)
    first, second, third = body["results"]
    assert first["index"] == 0
    assert_gender_result(first)
    single = post(client, photo).json()
    assert {key: first[key] for key in ("predictions", "faces", "image", "model")} == {
        key: single[key] for key in ("predictions", "faces", "image", "model")
    }
    assert second == _error_entry(1, 400, "bad_image", second)
    assert third == _error_entry(2, 422, "no_face", third)


@pytest.mark.slow
def test_an_oversize_file_fails_alone(small_upload_server: tuple[str, int], utkface_chip: Path) -> None:
    url, limit = small_upload_server
    photo = utkface_chip.read_bytes()
    assert limit < len(photo) < limit * 16  # over the file cap, well within the batch body cap
    with httpx.Client(base_url=url, timeout=60.0) as client:
        response = _post_batch(client, grey_png(), photo)
    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    assert first == _error_entry(0, 422, "no_face", first)
    assert second == _error_entry(1, 413, "image_too_large", second)


@pytest.mark.slow
def test_too_many_files_is_413(client: httpx.Client) -> None:
    small = grey_png()
    at_limit = _post_batch(client, *[small] * DEFAULT_MAX_BATCH_FILES)
    assert at_limit.status_code == 200, at_limit.text
    assert [entry["index"] for entry in at_limit.json()["results"]] == list(range(DEFAULT_MAX_BATCH_FILES))
    assert_error(_post_batch(client, *[small] * (DEFAULT_MAX_BATCH_FILES + 1)), 413, "too_many_files")


@pytest.mark.slow
def test_no_files_is_400(client: httpx.Client) -> None:
    assert_error(client.post(BATCH), 400, "missing_image")
    assert_error(post(client, grey_png(), path=BATCH, field="image"), 400, "missing_image")
    assert_error(client.post(BATCH, data={"images": "not a file"}), 400, "missing_image")


def test_an_unexpected_failure_fails_only_its_photo(monkeypatch: pytest.MonkeyPatch, utkface_chip: Path) -> None:
    app = create_app(Settings(threads=1))
    chip = utkface_chip.read_bytes()
    cursed = grey_png(size=(29, 31))

    async def call(client: httpx.AsyncClient) -> httpx.Response:
        async with app.router.lifespan_context(app):
            detector = app.state.facegender.detector
            detect = detector.detect

            def fragile(pixels: np.ndarray, **options: Any) -> Any:
                if pixels.shape[:2] == (31, 29):
                    raise RuntimeError("secret internals")
                return detect(pixels, **options)

            monkeypatch.setattr(detector, "detect", fragile)
            files = [
                ("images", (f"file{i}", data, "application/octet-stream")) for i, data in enumerate([chip, cursed])
            ]
            response = await client.post(BATCH, files=files)
            assert (await client.get("/ready")).status_code == 200
            after = await client.post("/api/gender", files={"image": ("chip.jpg", chip, "image/jpeg")})
            assert after.status_code == 200
            return response

    response = in_process(app, call)
    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    assert_gender_result(first)
    assert second == _error_entry(1, 503, "inference_failed", second)
    assert "secret" not in response.text
