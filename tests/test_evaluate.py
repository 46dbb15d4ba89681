"""The evaluation report on a small dataset."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facegender.evaluate import expected_calibration_error, render_report


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    confidence = np.array([0.75] * 4 + [1.0] * 2)
    correct = np.array([True, True, True, False, True, True])
    ece, bins = expected_calibration_error(confidence, correct)
    assert ece == pytest.approx(0.0)
    assert sum(b["count"] for b in bins) == 6


def test_ece_measures_overconfidence() -> None:
    ece, _ = expected_calibration_error(np.full(10, 0.95), np.array([True] * 5 + [False] * 5))
    assert ece == pytest.approx(0.45)


@pytest.mark.slow
def test_evaluate_writes_metrics_report_and_plots(utkface_subset: Callable[[int], Path], tmp_path: Path) -> None:
    from facegender.classify import DEFAULT_CLASSIFIER_PATH
    from facegender.evaluate import evaluate

    subset = utkface_subset(200)
    result = evaluate(data=subset, model=DEFAULT_CLASSIFIER_PATH, out=tmp_path / "report")
    metrics = json.loads(result.metrics_path.read_text())
    rows = subset.read_text().strip().splitlines()[1:]
    assert sum(metrics["splits"][s]["count"] for s in ("train", "val", "test")) == len(rows)
    assert 0.0 <= metrics["test"]["ece"] <= 1.0
    assert set(metrics["test"]["by_age_band"]) == {"0-2", "3-9", "10-17", "18-29", "30-44", "45-59", "60+"}
    for name in ("report.md", "confusion_matrix.png", "reliability.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert metrics["detailed_split"] == "test"
    assert sum(row["count"] for row in metrics["test"]["by_age_band"].values()) == metrics["splits"]["test"]["count"]
    found_in_test = round(metrics["splits"]["test"]["face_found"] * metrics["splits"]["test"]["count"])
    assert sum(row["count"] for row in metrics["test"]["by_head_turn"].values()) == found_in_test
    assert metrics["test"]["by_head_turn"]["0-15"]["count"] > 0  # most UTKFace chips face the camera
    assert "### By head turn (test)" in result.report_path.read_text()
    assert "| test |" in result.report_path.read_text()
    assert "## Test split" in result.report_path.read_text()
    assert render_report(metrics) == result.report_path.read_text()


@pytest.mark.slow
def test_evaluate_sorts_portraits_by_head_turn(
    shared_data: Path, utkface_subset: Callable[[int], Path], tmp_path: Path
) -> None:
    from facegender.classify import DEFAULT_CLASSIFIER_PATH
    from facegender.evaluate import evaluate

    profiles = ["female/girl-3626901_1280.jpg", "male/man-6829055_1280.jpg"]  # turned about 70 and 66 degrees
    frontal = ["female/girl-3576679_1280.jpg", "male/portrait-3338953_1280.jpg"]
    portraits = tmp_path / "portraits"
    for name in profiles + frontal:
        (portraits / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (portraits / "images" / name).symlink_to(shared_data / "portraits" / "images" / name)
    rows = [f"images/{name},{name.split('/')[0]}" for name in profiles + frontal]
    (portraits / "labels.csv").write_text("file,gender\n" + "\n".join(rows) + "\n")

    result = evaluate(data=utkface_subset(400), model=DEFAULT_CLASSIFIER_PATH, out=tmp_path / "r", portraits=portraits)
    by_turn = result.metrics["portraits"]["by_head_turn"]
    assert by_turn["0-15"]["count"] == 2
    assert by_turn["60-90"]["count"] + by_turn["45-60"]["count"] == 2
    assert "portraits end to end | photos |" in result.report_path.read_text()
