"""Hostile and odd requests through the real server: each is a 4xx in the one error shape, never a 5xx or a leak.

Every case is answered with ``{"success": false, "error": {"code", "message"}, "faces": []}``; no body names a
file path, a module or a traceback. The table in the README lists the same cases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from http_helpers import assert_error, grey_png, post

PATH = "/api/gender"
BOUNDARY = "facegender-test-boundary"
LEAKS = ("Traceback", "/work/", "site-packages", ".py", 'File "', "/etc/", "/usr/", "/home/", "/tmp/")
ODD_FILENAMES = ("../../etc/passwd", "a\\b<script>.jpg", "фото 照片 😀.jpg", "..", "/abs/path.jpg", "x\r\ny.jpg")


@pytest.fixture(scope="module")
def photo(portraits: list[tuple[Path, str]]) -> bytes:
    return portraits[0][0].read_bytes()


def _assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert_error(response, status, code)
    for leak in LEAKS:
        assert leak not in response.text, f"{leak!r} in {response.text}"


def _multipart(*parts: tuple[str, str | None, bytes], boundary: str = BOUNDARY) -> bytes:
    """A multipart body by hand: ``(field, filename or None for a plain value, data)`` per part."""
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def _raw(client: httpx.Client, body: bytes, content_type: str, path: str = PATH) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": content_type})


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "time_ms"}


@pytest.mark.slow
def test_empty_body(client: httpx.Client) -> None:
    _assert_refused(client.post(PATH), 400, "missing_image")
    _assert_refused(_raw(client, b"", f"multipart/form-data; boundary={BOUNDARY}"), 400, "missing_image")
    _assert_refused(
        _raw(client, f"--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"), 400, "missing_image"
    )


@pytest.mark.slow
def test_multipart_without_an_image_field(client: httpx.Client, photo: bytes) -> None:
    _assert_refused(post(client, photo, field="photo"), 400, "missing_image")
    _assert_refused(client.post(PATH, data={"other": "value"}, files={"file": ("a.jpg", photo)}), 400, "missing_image")


@pytest.mark.slow
def test_image_as_a_plain_form_value(client: httpx.Client) -> None:
    _assert_refused(client.post(PATH, data={"image": "not a file"}, files={"x": ("x", b"x")}), 400, "missing_image")
    _assert_refused(client.post(PATH, data={"image": "not a file"}), 400, "missing_image")  # urlencoded


@pytest.mark.slow
def test_two_image_fields_are_refused(client: httpx.Client, photo: bytes) -> None:
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    two_files = _multipart(("image", "a.jpg", photo), ("image", "b.jpg", photo))
    _assert_refused(_raw(client, two_files, content_type), 400, "bad_request")
    value_then_file = _multipart(("image", None, b"text"), ("image", "b.jpg", photo))
    _assert_refused(_raw(client, value_then_file, content_type), 400, "bad_request")
    # A file then a plain value: the field is not a file, as in the case above.
    file_then_value = _multipart(("image", "a.jpg", photo), ("image", None, b"text"))
    _assert_refused(_raw(client, file_then_value, content_type), 400, "missing_image")


@pytest.mark.slow
def test_bodies_that_are_not_multipart(client: httpx.Client, photo: bytes) -> None:
    _assert_refused(_raw(client, photo, "image/jpeg"), 400, "missing_image")
    _assert_refused(client.post(PATH, json={"image": "aGVsbG8="}), 400, "missing_image")
    _assert_refused(_raw(client, b"<html><body>hi</body></html>", "text/html"), 400, "missing_image")
    _assert_refused(_raw(client, b"\x00\xff" * 64, "application/octet-stream"), 400, "missing_image")
    _assert_refused(_raw(client, b"%ff%fe=%ff&image", "application/x-www-form-urlencoded"), 400, "missing_image")


@pytest.mark.slow
def test_a_file_that_is_not_an_image(client: httpx.Client) -> None:
    html = b"<!DOCTYPE html><html><script>alert(1)</script></html>"
    _assert_refused(post(client, html, filename="page.html"), 400, "bad_image")
    _assert_refused(post(client, b"", filename="empty.jpg"), 400, "bad_image")


@pytest.mark.slow
def test_a_sliver_of_an_image_has_no_face(client: httpx.Client) -> None:
    for size in ((3000, 3), (1, 500)):
        _assert_refused(post(client, grey_png(size)), 422, "no_face")


@pytest.mark.slow
def test_malformed_multipart(client: httpx.Client, photo: bytes) -> None:
    good = _multipart(("image", "a.jpg", photo))
    _assert_refused(_raw(client, good, "multipart/form-data; boundary=not-the-one"), 400, "bad_request")
    _assert_refused(_raw(client, good, "multipart/form-data"), 400, "bad_request")  # no boundary at all
    _assert_refused(_raw(client, good, "multipart/form-data; boundary="), 400, "bad_request")
    nameless = f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode()
    _assert_refused(_raw(client, nameless, f"multipart/form-data; boundary={BOUNDARY}"), 400, "bad_request")
    truncated = good[: len(good) // 2]
    _assert_refused(_raw(client, truncated, f"multipart/form-data; boundary={BOUNDARY}"), 400, "missing_image")


@pytest.mark.slow
def test_too_many_parts(client: httpx.Client) -> None:
    parts = [("f", None, b"v")] * 1001
    body = _multipart(*parts)
    _assert_refused(_raw(client, body, f"multipart/form-data; boundary={BOUNDARY}"), 400, "bad_request")


@pytest.mark.slow
def test_wrong_method_and_query(client: httpx.Client, photo: bytes) -> None:
    _assert_refused(client.get(PATH), 405, "method_not_allowed")
    _assert_refused(post(client, photo, detect="maybe"), 400, "bad_request")


@pytest.mark.slow
def test_the_file_name_is_used_for_nothing(client: httpx.Client, photo: bytes) -> None:
    plain = post(client, photo, filename="photo.jpg")
    assert plain.status_code == 200, plain.text
    for filename in ODD_FILENAMES:
        odd = post(client, photo, filename=filename)
        assert odd.status_code == 200, (filename, odd.text)
        assert _comparable(odd.json()) == _comparable(plain.json()), filename
        assert "passwd" not in odd.text
        assert "<script" not in odd.text
    not_utf8 = _multipart(("image", "NOT-UTF8..\\..\\boot.ini", photo)).replace(b"NOT-UTF8", b"\xff\xfe")
    odd = _raw(client, not_utf8, f"multipart/form-data; boundary={BOUNDARY}")
    assert odd.status_code == 200, odd.text
    assert _comparable(odd.json()) == _comparable(plain.json())


@pytest.mark.slow
def test_batch_refusals(client: httpx.Client) -> None:
    batch = "/api/gender/batch"
    _assert_refused(client.post(batch), 400, "missing_image")
    _assert_refused(client.post(batch, data={"images": "not a file"}), 400, "missing_image")
    _assert_refused(_raw(client, b"{}", "application/json", path=batch), 400, "missing_image")
    good = _multipart(("images", "a.jpg", b"x"))
    _assert_refused(_raw(client, good, "multipart/form-data; boundary=other", path=batch), 400, "bad_request")
