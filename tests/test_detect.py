"""Face detection and chips on real photos."""

from __future__ import annotations

import dataclasses
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facegender.align import face_chip, whole_image_chip
from facegender.data import load_dataset
from facegender.decode import load_image
from facegender.detect import SURE_UPRIGHT_SCORE, BlazeFaceDetector, _Pyramid, upright_turns
from facegender.evaluate import portrait_collages
from facegender.results import Box, Detection


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


def test_the_ear_of_a_head_turned_to_one_side_is_not_a_face_of_its_own(
    shared_data: Path, detector: BlazeFaceDetector
) -> None:
    # The four portraits where the detector also took the visible ear for a small face (scores 0.52 to 0.56).
    images = shared_data / "portraits" / "images"
    for name in (
        "female/girl-3626901_1280.jpg",
        "male/guy-3608788_1280.jpg",
        "male/nacforit-4223230_1280.jpg",
        "male/person-804035_1280.jpg",
    ):
        assert len(detector.detect(load_image(images / name))) == 1, name


def _face(centre_x: float, side: float, *, score: float, nose_x: float = 0.0) -> Detection:
    """A face centred at (``centre_x``, 200); its nose ``nose_x`` from the midpoint of its ears (half a side
    either way): 0 faces the camera."""
    half = side / 2
    left, top = centre_x - half, 200 - half
    points = (
        (centre_x - 0.3 * half, 190.0),
        (centre_x + 0.3 * half, 190.0),
        (centre_x + nose_x, 200.0),
        (centre_x, 220.0),
        (centre_x - half, 200.0),
        (centre_x + half, 200.0),
    )
    box = Box(round(left), round(top), round(side), round(side))
    return Detection(box=box, score=score, bounds=(left, top, left + side, top + side), keypoints=points)


def test_only_a_small_unsure_face_on_the_far_side_of_a_turned_head_counts_as_its_ear(
    detector: BlazeFaceDetector,
) -> None:
    turned = _face(400, 300, score=0.9, nose_x=200)  # nose to the right: turned about 53 degrees
    ear = _face(230, 120, score=0.55)  # left of it: the side away from the nose
    assert detector._is_ear(ear, of=turned)
    assert not detector._is_ear(_face(570, 120, score=0.55), of=turned)  # on the nose's side
    assert not detector._is_ear(_face(230, 120, score=0.8), of=turned)  # sure enough to be a face
    assert not detector._is_ear(_face(230, 180, score=0.55), of=turned)  # more than half its side
    assert not detector._is_ear(_face(60, 120, score=0.55), of=turned)  # more than a side away
    assert not detector._is_ear(ear, of=_face(400, 300, score=0.9))  # a frontal face shows no ear beside it


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


def test_small_faces_across_a_big_photo_are_found(shared_data: Path, detector: BlazeFaceDetector) -> None:
    # 32 faces of about a fifth of the short side on a 2400x1200 photo: only the finer scale sees them.
    chips = [item for item in load_dataset(shared_data / "utkface") if item.split == "val"][:32]
    canvas = np.full((1200, 2400, 3), 128, np.uint8)
    for place, item in enumerate(chips):
        top, left = (place // 8) * 300, (place % 8) * 300
        canvas[top : top + 300, left : left + 300] = cv2.resize(load_image(item.path), (300, 300))
    detections = detector.detect(canvas)
    places = {(int(d.box.top + d.box.height / 2) // 300, int(d.box.left + d.box.width / 2) // 300) for d in detections}
    assert len(places) >= 29  # 31, as with the overlapping tiles that this one pass replaced
    assert detector.smallest_face(2400, 1200) <= 1200 / 8  # as documented: down to an eighth of the short side


def test_a_box_around_surer_faces_is_dropped(shared_data: Path, detector: BlazeFaceDetector) -> None:
    # Seen whole at 128 px, a grid of 16 faces held a "face" of four of them (557 px, score 0.53).
    chips = [item for item in load_dataset(shared_data / "utkface") if item.split == "val"][::3][:16]
    canvas = Image.new("RGB", (2400, 1200), (128, 128, 128))
    for place, item in enumerate(chips):
        with Image.open(item.path) as chip:
            face = chip.convert("RGB").resize((300, 300), Image.Resampling.BICUBIC)
        canvas.paste(face, ((place % 8) * 300, (place // 8) * 300))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=90)
    detections = detector.detect(load_image(buffer.getvalue()))
    assert len(detections) == 16 and all(d.box.width < 450 for d in detections)  # a face here is at most 350 px


def test_passes_side_by_side_find_what_passes_in_turn_find(shared_data: Path, detector: BlazeFaceDetector) -> None:
    in_turn = BlazeFaceDetector(threads=1)
    items = load_dataset(shared_data / "portraits")[:8]
    collages = [collage for collage, _group in portrait_collages(items, cell=(400, 500))]
    for image in [load_image(item.path) for item in items] + collages:
        assert detector.detect(image) == in_turn.detect(image)


def test_pyramid_levels_are_exact_halvings() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (101, 203, 3), dtype=np.uint8)
    pyramid = _Pyramid(image)
    assert pyramid.level(shrink=3.9)[1:] == (1, 1)
    half, *factors = pyramid.level(shrink=4.0)
    assert factors == [2, 2] and half.shape == (50, 101, 3)
    means = image[:100, :202].reshape(50, 2, 101, 2, 3).astype(np.float32).mean(axis=(1, 3))
    assert np.abs(half.astype(np.float32) - means).max() <= 1
    quarter, *factors = pyramid.level(shrink=15.9)
    assert factors == [4, 4] and quarter.shape == (25, 50, 3)


SLIVERS_AND_PANORAMAS = [(1, 500), (3, 3000), (8, 8000), (5000, 3), (1, 39_000_000), (3, 3_000_000), (600, 33_000)]


@pytest.mark.parametrize("shape", SLIVERS_AND_PANORAMAS)
def test_slivers_and_panoramas_without_a_face_have_none(detector: BlazeFaceDetector, shape: tuple[int, int]) -> None:
    # Slivers run out of rows before the shrink a pass asks for; panoramas are too long for cv2's warp.
    assert detector.detect(np.full((*shape, 3), 128, np.uint8)) == []


def test_a_sliver_s_pyramid_keeps_its_last_row_and_a_panorama_s_fits_the_warp() -> None:
    row = np.arange(3000, dtype=np.uint8)[None, :, None].repeat(3, axis=2)
    level, *factors = _Pyramid(np.concatenate([row, row, row])).level(shrink=8.0)
    assert factors == [4, 2] and level.shape == (1, 750, 3)
    assert np.abs(level[0, :, 0].astype(np.float32) - row[0, :, 0].reshape(750, 4).mean(axis=1)).max() <= 1
    panorama, *factors = _Pyramid(np.zeros((600, 40_000, 3), np.uint8)).level(shrink=1.5)
    assert factors == [2, 2] and panorama.shape == (300, 20_000, 3)


def test_a_busy_side_thread_means_passes_in_turn_not_a_wait(portrait_path: Path) -> None:
    detector = BlazeFaceDetector()
    image = load_image(portrait_path)
    assert min(image.shape[:2]) >= 400  # two passes
    expected = detector.detect(image)
    with detector._side_thread_free:  # as while another photo's pass runs there
        assert detector.detect(image) == expected


def test_passes_run_in_turn_while_others_want_the_cores(portrait_path: Path) -> None:
    idle = [True]
    detector = BlazeFaceDetector(side_by_side_while=lambda: idle[0])
    image = load_image(portrait_path)
    looks: list[list[Detection]] = []
    expected = detector.detect(image, on_first_look=looks.append)
    assert len(looks) == 1  # side by side: the first look came
    idle[0] = False  # as in a server with requests waiting
    assert detector.detect(image, on_first_look=looks.append) == expected and len(looks) == 1


def test_the_first_look_is_the_whole_photo_pass_given_while_the_finer_passes_run(shared_data: Path) -> None:
    detector = BlazeFaceDetector()
    items = load_dataset(shared_data / "portraits")[:40]
    images = [image for image in (load_image(item.path) for item in items) if min(image.shape[:2]) >= 400]
    kept = 0
    for image in images:
        looks: list[list[Detection]] = []
        final = detector.detect(image, on_first_look=looks.append)
        (first,) = looks  # once per photo, and before the answer
        assert first and first == sorted(first, key=lambda d: d.box.area, reverse=True)
        kept += final[0] in first
        with detector._side_thread_free:  # passes in turn: nothing to fill the wait with, so no first look
            assert detector.detect(image, on_first_look=looks.append) == final and len(looks) == 1
    # The finer passes mostly leave a portrait's face to the whole-photo pass, or the first look would not pay.
    assert kept >= len(images) * 0.7


def test_a_photo_searched_once_has_no_first_look(detector: BlazeFaceDetector) -> None:
    looks: list[list[Detection]] = []
    detector.detect(np.zeros((300, 200, 3), np.uint8), on_first_look=looks.append)
    assert looks == []


def test_a_failing_first_look_leaves_the_detector_usable(portrait_path: Path) -> None:
    detector = BlazeFaceDetector()
    image = load_image(portrait_path)
    expected = detector.detect(image)

    def fail(first: list[Detection]) -> None:
        raise RuntimeError("caller's bug")

    with pytest.raises(RuntimeError, match="caller's bug"):
        detector.detect(image, on_first_look=fail)
    assert not detector._side_thread_free.locked()
    assert detector.detect(image) == expected


def test_threads_sharing_one_detector_get_each_photo_s_own_faces(shared_data: Path) -> None:
    detector = BlazeFaceDetector()
    images = [load_image(item.path) for item in load_dataset(shared_data / "portraits")[:12]]
    expected = [detector.detect(image) for image in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(detector.detect, images * 3)) == expected * 3


def test_the_search_counts_sides_in_pixels_of_the_photo_at_any_decode_scale(detector: BlazeFaceDetector) -> None:
    # 900x600 decoded at half scale is 450x300: still a photo with a short side over 400, so still searched finer.
    assert detector.smallest_face(450, 300, downscale=2) * 2 == pytest.approx(detector.smallest_face(900, 600))
    assert detector.smallest_face(900, 600) < detector.smallest_face(390, 260) * 900 / 390
    assert detector.finest_scale(900, 600) == pytest.approx(208 / 600)  # its input: 208 pixels on the short side
    assert detector.finest_scale(300, 200) == pytest.approx(128 / 300)  # a small photo: the whole-photo pass only


def test_a_face_turned_a_quarter_or_upside_down_is_turned_back(shared_data: Path, detector: BlazeFaceDetector) -> None:
    chips = [load_image(item.path) for item in load_dataset(shared_data / "utkface")[::500]]
    for chip in chips:
        assert detector.turned_upright(chip, detector.detect(chip)[0]) is None  # upright already
    turned_back = 0
    for index, chip in enumerate(chips):
        turns = 1 + index % 3
        turned = np.ascontiguousarray(np.rot90(chip, turns))
        faces = detector.detect(turned)
        upright = detector.turned_upright(turned, faces[0]) if faces else None
        if upright is not None:
            assert (turns + upright.quarter_turns) % 4 == 0
            left, top, right, bottom = upright.detection.bounds
            height, width = upright.pixels.shape[:2]
            assert 0 <= (left + right) / 2 <= width and 0 <= (top + bottom) / 2 <= height
            turned_back += 1
    assert turned_back >= 0.8 * len(chips)  # (an upside-down chip is not always found: 82% of them)


def test_a_face_found_surely_as_it_is_is_not_looked_at_again(
    shared_data: Path, detector: BlazeFaceDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = load_image(load_dataset(shared_data / "portraits")[0].path)
    face = detector.detect(photo)[0]
    looked_at: list[float] = []
    four_looks = detector._four_looks

    def counted_looks(image: np.ndarray, found: Detection) -> object:
        looked_at.append(found.score)
        return four_looks(image, found)

    monkeypatch.setattr(detector, "_four_looks", counted_looks)
    sure, unsure = (dataclasses.replace(face, score=score) for score in (SURE_UPRIGHT_SCORE, SURE_UPRIGHT_SCORE - 0.01))
    assert detector.turned_upright(photo, sure) is None
    assert detector.turned_upright(photo, unsure) is None  # upright all the same, but only known by looking
    assert looked_at == [unsure.score]


def test_a_quarter_turn_must_make_the_face_surer_by_more_than_the_margin() -> None:
    assert upright_turns([0.9, 0.2, 0.95, 0.1], margin=0.1) == 0
    assert upright_turns([0.7, 0.2, 0.95, 0.1], margin=0.1) == 2
    assert upright_turns([0.0, 0.0, 0.0, 0.8], margin=0.1) == 3


@pytest.mark.parametrize(("width", "height"), [(853, 1280), (1280, 853), (600, 600), (1000, 400)])
def test_the_passes_are_padded_by_less_than_a_stride(detector: BlazeFaceDetector, width: int, height: int) -> None:
    # Padding is work for nothing: the whole-photo pass is as narrow as the photo (not a square), and the finer
    # pass shows the short side as exactly 208 pixels (not 213, padded to 224).
    whole = detector._whole(width, height)
    assert max(whole.width, whole.height) == detector.input_size
    assert whole.width - width * whole.scale < 16 and whole.height - height * whole.scale < 16
    for side in detector._fine_sides(width, height, downscale=1.0)[:1]:
        fine = detector._fine(width, height, side)
        assert min(fine.width, fine.height) == pytest.approx(min(width, height) * fine.scale) == 208
