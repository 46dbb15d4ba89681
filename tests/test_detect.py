"""Face detection and chips on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegender.align import face_chip, whole_image_chip
from facegender.data import load_dataset
from facegender.decode import load_image
from facegender.detect import BlazeFaceDetector
from facegender.evaluate import portrait_collages


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector()


def test_no_face_in_flat_or_noise_images(detector: BlazeFaceDetector) -> None:
    rng = np.random.default_rng(0)
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert detector.detect(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)) == []


def test_utkface_chips_are_found(shared_data: Path, detector: BlazeFaceDetector) -> None:
    items = load_dataset(shared_data / "utkface")[::100]
    found = sum(bool(detector.detect(load_image(item.path))) for item in items)
    assert found / len(items) >= 0.995


def test_each_face_of_a_collage_is_found_in_its_quadrant(shared_data: Path, detector: BlazeFaceDetector) -> None:
    items = load_dataset(shared_data / "portraits")[:16]
    for collage, _group in portrait_collages(items, cell=(400, 500)):
        detections = detector.detect(collage)
        quadrants = {
            (int(d.box.left + d.box.width / 2 >= 400), int(d.box.top + d.box.height / 2 >= 500)) for d in detections
        }
        assert quadrants == {(0, 0), (1, 0), (0, 1), (1, 1)}


def test_faces_come_largest_first_with_landmarks_inside_the_box(
    portrait_path: Path, detector: BlazeFaceDetector
) -> None:
    image = load_image(portrait_path)
    small = image[::3, ::3].copy()
    canvas = np.full((image.shape[0], image.shape[1] + small.shape[1], 3), 255, np.uint8)
    canvas[:, : image.shape[1]] = image
    canvas[: small.shape[0], image.shape[1] :] = small
    detections = detector.detect(canvas)
    assert len(detections) == 2
    assert detections[0].box.area > detections[1].box.area
    left, top, right, bottom = detections[0].bounds
    for x, y in detections[0].keypoints[:4]:  # eyes, nose, mouth
        assert left <= x <= right and top <= y <= bottom


def test_chips_have_the_requested_size_and_differ_per_face(portrait_path: Path, detector: BlazeFaceDetector) -> None:
    image = load_image(portrait_path)
    (detection, *_) = detector.detect(image)
    chip = face_chip(image, detection, size=112)
    assert chip.shape == (112, 112, 3) and chip.dtype == np.uint8
    assert whole_image_chip(image, size=112).shape == (112, 112, 3)
    assert not np.array_equal(chip, whole_image_chip(image, size=112))
