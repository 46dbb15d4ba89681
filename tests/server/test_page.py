"""``GET /``: the page, its Content-Security-Policy, and the page at work in a real headless Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from http_helpers import grey_png, in_process, post
from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright

from facegender import Settings
from facegender.server import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
FACE_LABEL = re.compile(r"^Face 1: (female|male) (\d{1,3}\.\d)%$")
TIMEOUT_MS = 60_000
NO_FACE_LOG = "the server responded with a status of 422"  # Chromium logs every 4xx answer, wanted or not


def test_page_is_html_with_a_strict_csp() -> None:
    app = create_app(Settings())  # the page needs no models
    page = in_process(app, lambda client: client.get("/"))
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    html = page.text
    assert '<script src="/static/app.js" defer></script>' in html
    assert '<link rel="stylesheet" href="/static/app.css">' in html
    assert "<style" not in html
    assert "style=" not in html
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None, "no inline script"
    for ident in ("photo", "error", "canvas", "faces"):
        assert f'id="{ident}"' in html
    script = in_process(app, lambda client: client.get("/static/app.js"))
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text
    style = in_process(app, lambda client: client.get("/static/app.css"))
    assert style.status_code == 200
    assert style.headers["content-type"].startswith("text/css")


@pytest.fixture(scope="module")
def browser_page(server_url: str) -> Iterator[tuple[Page, list[str]]]:
    """The page open in headless Chromium, and the unexpected console errors it logs (a CSP violation is one)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    errors: list[str] = []

    def keep_errors(message: ConsoleMessage) -> None:
        if message.type == "error" and NO_FACE_LOG not in message.text:
            errors.append(message.text)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("console", keep_errors)
            page.goto(server_url)
            yield page, errors
        finally:
            browser.close()


@pytest.mark.slow
def test_a_portrait_is_boxed_and_labelled(
    browser_page: tuple[Page, list[str]], client: httpx.Client, portrait_path: Path
) -> None:
    page, errors = browser_page
    expected = post(client, portrait_path.read_bytes()).json()
    assert expected["success"] is True, expected
    page.set_input_files("#photo", portrait_path)
    label = page.locator("#faces li").first
    expect(label).to_have_text(FACE_LABEL)
    match = FACE_LABEL.match(label.inner_text())
    assert match is not None
    face = expected["faces"][0]
    assert match.group(1) == face["class"]
    assert float(match.group(2)) == pytest.approx(face["probability"] * 100, abs=0.051)
    expect(page.locator("#faces li")).to_have_count(len(expected["faces"]))
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#canvas")).to_be_visible()
    assert page.eval_on_selector("#canvas", "canvas => [canvas.width, canvas.height]") == [
        expected["image"]["width"],
        expected["image"]["height"],
    ]
    assert errors == []


@pytest.mark.slow
def test_a_photo_without_a_face_says_so(browser_page: tuple[Page, list[str]]) -> None:
    page, errors = browser_page
    page.set_input_files("#photo", {"name": "grey.png", "mimeType": "image/png", "buffer": grey_png()})
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text(re.compile(r"no face", re.IGNORECASE))
    expect(page.locator("#faces li")).to_have_count(0)
    assert errors == []
