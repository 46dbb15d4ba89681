"""Face chips: one function for training and serving, the softening of faces from sharp, big photos, and the
head turn read from the detector's keypoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegender import FaceGender
from facegender.align import (
    CHIP_MARGIN,
    TRAINING_DETAIL,
    TRAINING_SHRINK_LIMIT,
    WARP_SIDE_LIMIT,
    chip_detail,
    chip_shrink,
    face_chip,
    head_turn,
)
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


def _keypoints(*, nose_x: float, angle: float = 0.0) -> Detection:
    """Six keypoints of a head whose ears are 100 px apart, the nose ``nose_x`` from their midpoint along the
    eyes, the whole rotated by ``angle`` degrees in the image."""
    level = [(-30.0, -20.0), (30.0, -20.0), (nose_x, 10.0), (0.0, 40.0), (-50.0, 0.0), (50.0, 0.0)]
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    points = tuple((200 + x * cos - y * sin, 200 + x * sin + y * cos) for x, y in level)
    return Detection(box=Box(140, 140, 120, 120), score=0.9, bounds=(140, 140, 260, 260), keypoints=points)


def test_a_panorama_too_long_for_the_warp_gives_the_chips_of_its_parts(
    portrait_path: Path, face_gender: FaceGender
) -> None:
    face = load_image(portrait_path)
    height, width = face.shape[:2]
    panorama = np.full((height, WARP_SIDE_LIMIT + 1000, 3), 120, np.uint8)
    for left in (0, 20_000, panorama.shape[1] - width):  # at both ends, where the chip reaches past the edge
        panorama[:, left : left + width] = face
    faces = face_gender.detector.detect(panorama)
    assert len(faces) == 3
    for found in faces:
        left, top, right, bottom = found.bounds
        offset = max(0, int(left) - 800)
        moved = Detection(
            box=found.box,
            score=found.score,
            bounds=(left - offset, top, right - offset, bottom),
            keypoints=tuple((x - offset, y) for x, y in found.keypoints),
        )
        part = panorama[:, offset : offset + 2000]
        assert np.array_equal(face_chip(panorama, found, size=SIZE), face_chip(part, moved, size=SIZE))


def test_the_head_turn_is_zero_facing_the_camera_and_grows_with_the_nose_towards_an_ear() -> None:
    assert head_turn(_keypoints(nose_x=0)) == pytest.approx(0.0)
    # A sphere turned by t puts the nose sin(t) from the ears' midpoint, the ears 2 cos(t) apart: 30 px of 100.
    assert head_turn(_keypoints(nose_x=30)) == pytest.approx(np.degrees(np.arctan(0.6)))
    assert head_turn(_keypoints(nose_x=-30)) == pytest.approx(-np.degrees(np.arctan(0.6)))
    assert head_turn(_keypoints(nose_x=60)) == pytest.approx(np.degrees(np.arctan(1.2)))  # past the far ear: > 45


def test_the_head_turn_does_not_depend_on_how_the_head_is_tilted() -> None:
    for angle in (-40, 25, 180):
        assert head_turn(_keypoints(nose_x=20, angle=angle)) == pytest.approx(head_turn(_keypoints(nose_x=20)))


def test_a_detection_without_keypoints_has_no_head_turn() -> None:
    assert head_turn(_detection(10, 10, 100)) is None


def test_profiles_read_as_strongly_turned_and_frontal_faces_as_not(shared_data: Path, face_gender: FaceGender) -> None:
    portraits = shared_data / "portraits" / "images"
    turns = {
        name: face_gender.predict(portraits / name)[0].head_turn
        for name in ("female/girl-3626901_1280.jpg", "male/man-6829055_1280.jpg", "female/girl-3576679_1280.jpg")
    }
    profile, three_quarters, frontal = turns.values()
    assert profile is not None and three_quarters is not None and frontal is not None
    assert abs(profile) > 60 and abs(three_quarters) > 45 and abs(frontal) < 10
    mirrored = face_gender.predict(load_image(portraits / "female/girl-3626901_1280.jpg")[:, ::-1].copy())
    turned_the_other_way = mirrored[0].head_turn
    assert turned_the_other_way is not None and turned_the_other_way * profile < 0 and abs(turned_the_other_way) > 45
