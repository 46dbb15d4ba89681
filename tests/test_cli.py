"""The command line, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from benchmarks.common import free_port, wait_until_ready
from facegender import __version__


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facegender", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"facegender {__version__}"


def test_predict_prints_a_table(portrait_path: Path) -> None:
    result = run_cli("predict", str(portrait_path))
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.split() == ["file", "face", "class", "probability", "box"]
    assert row.split()[2] in {"male", "female"}


def test_predict_json_and_exit_codes(portrait_path: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(blank)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")

    ok = run_cli("predict", "--json", str(portrait_path))
    record = json.loads(ok.stdout)
    assert ok.returncode == 0 and record["error"] is None and record["faces"][0]["label"] in {"male", "female"}

    no_face = run_cli("predict", "--json", str(blank))
    assert no_face.returncode == 1
    assert json.loads(no_face.stdout)["error"]["code"] == "no_face"

    bad = run_cli("predict", str(portrait_path), str(text))
    assert bad.returncode == 2
    assert "bad_image" in bad.stdout and "Traceback" not in bad.stdout + bad.stderr


def test_missing_model_is_one_line_error(tmp_path: Path, portrait_path: Path) -> None:
    result = run_cli("predict", str(portrait_path), env={"FACEGENDER_CLASSIFIER_PATH": str(tmp_path / "none.onnx")})
    assert result.returncode == 3
    assert result.stderr.strip().count("\n") == 0
    assert "model_unavailable" in result.stderr and "Traceback" not in result.stderr


def test_debug_shows_traceback(tmp_path: Path, portrait_path: Path) -> None:
    result = run_cli(
        "predict",
        str(portrait_path),
        env={"FACEGENDER_CLASSIFIER_PATH": str(tmp_path / "none.onnx"), "FACEGENDER_DEBUG": "1"},
    )
    assert result.returncode == 3 and "Traceback" in result.stderr


def test_invalid_setting_is_a_usage_error(portrait_path: Path) -> None:
    result = run_cli("predict", str(portrait_path), env={"FACEGENDER_MAX_PIXELS": "lots"})
    assert result.returncode == 2
    assert "FACEGENDER_MAX_PIXELS" in result.stderr or "max_pixels" in result.stderr
    assert "Traceback" not in result.stderr


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "workers"),
    [(["-m", "facegender", "serve"], 1), (["-m", "facegender", "serve"], 2), ([str(ROOT / "app.py")], 1)],
    ids=["serve", "serve-2-workers", "python-app.py"],
)
def test_serve_answers_on_the_requested_port(portrait_path: Path, command: list[str], workers: int) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, *command, "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "FACEGENDER_PORT": str(port)},
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", server, timeout_s=60)
        with portrait_path.open("rb") as photo:
            response = httpx.post(f"http://127.0.0.1:{port}/api/gender", files={"image": photo}, timeout=30)
        assert response.status_code == 200
        assert response.json()["predictions"]["class"] in {"male", "female"}
        if workers > 1:  # the supervisor only watches the workers: the standard library, no app, no uvicorn
            resident_kib = next(
                int(line.split()[1])
                for line in Path(f"/proc/{server.pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
            assert resident_kib < 24 * 1024
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0


def test_serve_with_a_missing_model_stops_with_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "serve", "--port", str(free_port()), env={"FACEGENDER_CLASSIFIER_PATH": str(tmp_path / "none.onnx")}
    )
    assert result.returncode == 3
    assert result.stderr.strip().count("\n") == 0 and "model_unavailable" in result.stderr


@pytest.mark.slow
def test_evaluate_details_the_chosen_split(utkface_subset: Callable[[int], Path], tmp_path: Path) -> None:
    subset, out = utkface_subset(200), tmp_path / "report"
    result = run_cli(
        "evaluate", "--data", str(subset), "--out", str(out), "--split", "val", "--cache-dir", str(tmp_path / "cache")
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["detailed_split"] == "val"
    assert "test" not in metrics and "test" not in metrics["splits"]  # candidates are chosen blind to the test split
    assert sum(row["count"] for row in metrics["val"]["by_age_band"].values()) == metrics["splits"]["val"]["count"]
    report = (out / "report.md").read_text()
    assert "## Validation split" in report
    assert "## Test split" not in report and "| test |" not in report
    refused = run_cli("evaluate", "--data", str(subset), "--out", str(out), "--split", "validation")
    assert refused.returncode == 2
    assert "invalid choice" in refused.stderr


@pytest.mark.slow
def test_second_opinion_writes_a_model_the_classifier_loads(
    utkface_subset: Callable[[int], Path], tmp_path: Path
) -> None:
    pytest.importorskip("dlib")
    import hashlib

    import onnx

    from facegender.classify import FLOAT_CLASSIFIER_PATH, GenderClassifier

    subset, network, out = utkface_subset(40), tmp_path / "tuned.npz", tmp_path / "second.onnx"
    cache = ("--cache-dir", str(tmp_path / "cache"))
    tuned = run_cli("tune-second-opinion", "--data", str(subset), "--out", str(network), "--epochs", "1", *cache)
    assert tuned.returncode == 0, tuned.stderr
    assert "epoch 1: train loss" in tuned.stdout and "val acc" in tuned.stdout and network.is_file()

    command = ("second-opinion", "--data", str(subset), "--out", str(out), "--network", str(network), *cache)
    result = run_cli(*command, "--model", str(FLOAT_CLASSIFIER_PATH), "--model-version", "9.9.9")
    assert result.returncode == 0, result.stderr
    assert "with the second opinion" in result.stdout and out.with_name("second.onnx.json").is_file()
    assert GenderClassifier(model_path=out).version == "9.9.9"
    props = {prop.key: prop.value for prop in onnx.load(str(out)).metadata_props}
    assert props["descriptor_network_sha256"] == hashlib.sha256(network.read_bytes()).hexdigest()
    assert "tuned to tell gender" in props["second_opinion"]
    missing = run_cli(*command, "--model", str(tmp_path / "none.onnx"))
    assert missing.returncode == 3 and "model_unavailable" in missing.stderr and "Traceback" not in missing.stderr
    not_a_network = run_cli(*command[:-4], "--network", str(subset), *cache, "--model", str(FLOAT_CLASSIFIER_PATH))
    assert not_a_network.returncode == 3 and "not a dlib network" in not_a_network.stderr
