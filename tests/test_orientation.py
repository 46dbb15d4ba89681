"""The shipped orientation model: upright chips read as upright, turned ones not; its inputs are checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegender.chips import make_chips
from facegender.data import load_dataset
from facegender.errors import ModelError
from facegender.orientation import OrientationClassifier
from facegender.pipeline import UPRIGHT_PROBABILITY


@pytest.fixture(scope="module")
def orientation() -> OrientationClassifier:
    return OrientationClassifier()


@pytest.fixture(scope="module")
def validation_paths(shared_data: Path) -> list[Path]:
    return [item.path for item in load_dataset(shared_data / "utkface") if item.split == "val"][::50]


def test_upright_chips_are_found_upright_and_turned_ones_are_not(
    orientation: OrientationClassifier, validation_paths: list[Path], tmp_path: Path
) -> None:
    for quarter_turns in range(4):
        chips = make_chips(
            validation_paths, size=orientation.input_size, cache_dir=tmp_path, quarter_turns=quarter_turns
        )
        upright = orientation.upright_probability(chips.chips[chips.found]) >= UPRIGHT_PROBABILITY
        if quarter_turns == 0:
            assert upright.mean() >= 0.95
        else:
            assert upright.mean() <= 0.05


def test_chips_of_another_size_are_refused_and_none_give_none(orientation: OrientationClassifier) -> None:
    with pytest.raises(ValueError, match="chips must be"):
        orientation.upright_probability(np.zeros((1, 64, 64, 3), np.uint8))
    assert orientation.upright_probability(
        np.zeros((0, orientation.input_size, orientation.input_size, 3), np.uint8)
    ).shape == (0,)


def test_a_missing_model_file_raises_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        OrientationClassifier(model_path=tmp_path / "orientation.onnx")
