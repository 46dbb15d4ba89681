"""Shared fixtures: the shared data folder, one fixed real portrait and a loaded pipeline."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from facegender import FaceGender

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<repo>/../shared/data``; every test that needs it is skipped when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def portrait_path(shared_data: Path) -> Path:
    """One fixed real photo: the first row of ``portraits/labels.csv``."""
    portraits = shared_data / "portraits"
    with (portraits / "labels.csv").open(newline="", encoding="utf-8") as handle:
        first = next(csv.DictReader(handle), None)
    if first is None:
        pytest.skip("portraits/labels.csv has no rows")
    path = portraits / first["file"]
    if not path.is_file():
        pytest.skip(f"portrait not found: {path}")
    return path


@pytest.fixture(scope="session")
def face_gender() -> FaceGender:
    """The full pipeline, loaded once per test session."""
    return FaceGender()


@pytest.fixture
def utkface_subset(shared_data: Path, tmp_path: Path) -> Callable[[int], Path]:
    """Write a labels CSV of every ``step``-th UTKFace chip (absolute paths) into ``tmp_path``; its path."""

    def write(step: int) -> Path:
        source = shared_data / "utkface"
        with (source / "labels.csv").open() as handle:
            rows = list(csv.DictReader(handle))[::step]
        subset = tmp_path / "labels.csv"
        with subset.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["file", "gender", "age", "race"])
            writer.writeheader()
            writer.writerows({**row, "file": str(source / row["file"])} for row in rows)
        return subset

    return write
