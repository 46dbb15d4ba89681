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
    assert "| test |" in result.report_path.read_text()
    assert "## Test split" in result.report_path.read_text()
    assert render_report(metrics) == result.report_path.read_text()
