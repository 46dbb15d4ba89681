"""Fixtures that run the HTTP service in a real uvicorn process and find the shared test photos."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest
from http_helpers import Server, StartServer

from benchmarks.common import free_port, wait_until_ready

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
START_TIMEOUT_S = 120.0
SMALL_UPLOAD_BYTES = 2048


@contextmanager
def _uvicorn(log_dir: Path, *, cli: bool = False, **env: str) -> Iterator[Server]:
    """Run ``uvicorn facegender.server.app:app_from_env`` on a free port; yield it once ready.

    With ``cli``, run ``facegender serve`` (the production entry point, with its signal handling) instead.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = log_dir / f"uvicorn-{port}.log"
    if cli:
        command = [sys.executable, "-m", "facegender", "serve"]
    else:
        command = [sys.executable, "-m", "uvicorn", "facegender.server.app:app_from_env", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env={**os.environ, "FACEGENDER_THREADS": "1", **env}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            try:
                wait_until_ready(
                    url, process, timeout_s=START_TIMEOUT_S, output=lambda: log_path.read_text(errors="replace")
                )
            except RuntimeError as error:
                pytest.fail(str(error))
            yield Server(url=url, log_path=log_path, process=process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _uvicorn(tmp_path_factory.mktemp("server")) as server:
        yield server.url


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> StartServer:
    """Start more servers, each with its own environment variables, for as long as a ``with`` block."""

    def start(**env: str) -> AbstractContextManager[Server]:
        return _uvicorn(tmp_path_factory.mktemp("server"), **env)

    return start


@pytest.fixture(scope="session")
def start_cli_server(tmp_path_factory: pytest.TempPathFactory) -> StartServer:
    """Like ``start_server``, but each server is ``facegender serve`` rather than uvicorn started directly."""

    def start(**env: str) -> AbstractContextManager[Server]:
        return _uvicorn(tmp_path_factory.mktemp("cli-server"), cli=True, **env)

    return start


@pytest.fixture(scope="session")
def small_upload_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A second server that refuses small uploads: its base URL and its upload limit in bytes."""
    with _uvicorn(tmp_path_factory.mktemp("small"), FACEGENDER_MAX_UPLOAD_BYTES=str(SMALL_UPLOAD_BYTES)) as server:
        yield server.url, SMALL_UPLOAD_BYTES


@pytest.fixture(scope="session")
def client(server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_url, timeout=60.0) as session:
        yield session


def _labelled(folder: Path) -> list[tuple[Path, str]]:
    labels = folder / "labels.csv"
    if not labels.is_file():
        pytest.skip(f"shared test data not found: {labels}")
    with labels.open(newline="") as handle:
        return [(folder / row["file"], row["gender"]) for row in csv.DictReader(handle)]


@pytest.fixture(scope="session")
def portraits() -> list[tuple[Path, str]]:
    """Ten fixed portraits and their labels: five women and five men, evenly spaced through labels.csv."""
    rows = _labelled(SHARED_DATA / "portraits")
    chosen: list[tuple[Path, str]] = []
    for gender in ("female", "male"):
        matching = [row for row in rows if row[1] == gender]
        chosen += matching[:: max(1, len(matching) // 5)][:5]
    return chosen


@pytest.fixture(scope="session")
def utkface_chip() -> Path:
    """One aligned and cropped UTKFace face."""
    return _labelled(SHARED_DATA / "utkface")[0][0]
