"""Face chips: one function for training and serving, and the softening of faces from sharp, big photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegender import FaceGender
from facegender.align import CHIP_MARGIN, TRAINING_DETAIL, TRAINING_SHRINK_LIMIT, chip_detail, chip_shrink, face_chip
from facegender.data import load_dataset
from facegender.decode import load_image
from facegender.results import Box, Detection

SIZE = 128


def _detection(left: float, top: float, side: float) -> Detection:
    box = Box(int(left), int(top), int(side), int(side))
    eyes = ((left + side * 0.3, top + side * 0.4), (left + side * 0.7, top + side * 0.4))
    return Detection(box=box, score=0.9, bounds=(left, top, left + side, top + side), keypoints=eyes)


def _texture(side: int) -> np.ndarray:
    """Fine, sharp detail at every scale: what a high-resolution photo keeps when shrunk."""
    return np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)


def test_a_face_shrunk_past_the_training_limit_is_softened_to_the_training_detail() -> None:
    side = int(SIZE / CHIP_MARGIN * (TRAINING_SHRINK_LIMIT + 1))
    image = _texture(2 * side)
    chip = face_chip(image, _detection(side / 2, side / 2, side), size=SIZE)
    assert chip.shape == (SIZE, SIZE, 3) and chip.dtype == np.uint8
    assert 0.8 * TRAINING_DETAIL <= chip_detail(chip) <= 1.05 * TRAINING_DETAIL  # 1.05: rounding to uint8


def test_a_face_shrunk_no_more_than_the_training_faces_is_left_sharp() -> None:
    side = int(SIZE / CHIP_MARGIN * 1.9)  # as the UTKFace faces are
    image = _texture(2 * side)
    assert chip_detail(face_chip(image, _detection(side / 2, side / 2, side), size=SIZE)) > 3 * TRAINING_DETAIL


def test_a_jpeg_decoded_at_reduced_scale_counts_as_shrunk_already() -> None:
    side = int(SIZE / CHIP_MARGIN * 1.9)
    image = _texture(2 * side)
    chip = face_chip(image, _detection(side / 2, side / 2, side), size=SIZE, downscale=2.0)
    assert chip_detail(chip) <= 1.05 * TRAINING_DETAIL


@pytest.mark.slow
def test_the_training_faces_are_never_softened(shared_data: Path, face_gender: FaceGender) -> None:
    items = load_dataset(shared_data / "utkface")[::100]
    shrinks = []
    for item in items:
        found = face_gender.detector.detect(load_image(item.path))
        if found:
            shrinks.append(chip_shrink(found[0], size=SIZE))
    assert len(shrinks) >= 0.99 * len(items)
    assert max(shrinks) < TRAINING_SHRINK_LIMIT
