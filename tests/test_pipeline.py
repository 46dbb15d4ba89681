"""The library API: inputs, batching, threads and settings."""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from facegender import Detection, FaceGender, ImageTooLargeError, InferenceFailedError, InvalidImageError, Settings
from facegender.data import load_dataset
from facegender.decode import DecodedImage, decode_image, load_image
from facegender.detect import SURE_UPRIGHT_SCORE
from facegender.errors import ModelError
from facegender.pipeline import UNSURE_READING, UPRIGHT_PROBABILITY


@pytest.fixture(scope="module")
def portraits(shared_data: Path) -> list[Path]:
    return [item.path for item in load_dataset(shared_data / "portraits")[::23]]


def test_every_input_kind_gives_the_same_answer(portrait_path: Path, face_gender: FaceGender) -> None:
    expected = face_gender.predict(portrait_path)
    with Image.open(portrait_path) as image:
        pil = image.convert("RGB")
    data = portrait_path.read_bytes()
    for source in (portrait_path, str(portrait_path), data, io.BytesIO(data), pil, np.asarray(pil)):
        faces = face_gender.predict(source)
        assert [(f.box, f.label) for f in faces] == [(f.box, f.label) for f in expected]
        assert faces[0].probability == pytest.approx(expected[0].probability, abs=1e-5)


def test_batch_equals_one_by_one(portraits: list[Path], face_gender: FaceGender) -> None:
    batch = face_gender.predict_batch(portraits)
    for path, faces in zip(portraits, batch, strict=True):
        single = face_gender.predict(path)
        assert [(f.box, f.label) for f in faces] == [(f.box, f.label) for f in single]
        assert [f.probability for f in faces] == pytest.approx([f.probability for f in single], abs=1e-5)


def test_faces_classified_at_the_detector_s_first_look_get_the_same_answer(shared_data: Path) -> None:
    face_gender = FaceGender()
    paths = [item.path for item in load_dataset(shared_data / "portraits")[:40]]
    early = 0
    for path in paths:
        faces = face_gender.predict(path)
        early += len(face_gender._locate(face_gender.decode(path), detect=True).answers)
        with face_gender.detector._side_thread_free:  # passes in turn: no first look, every chip after detection
            assert face_gender._locate(face_gender.decode(path), detect=True).answers == {}
            assert face_gender.predict(path) == faces
    assert early >= len(paths) // 3


def test_a_batch_of_one_image_must_be_a_sequence(portrait_path: Path, face_gender: FaceGender) -> None:
    pixels = load_image(portrait_path)
    encoded = portrait_path.read_bytes()
    for one in (portrait_path, str(portrait_path), encoded, pixels, Image.fromarray(pixels), io.BytesIO(encoded)):
        with pytest.raises(TypeError, match="use predict"):
            face_gender.predict_batch(one)  # type: ignore[arg-type]
    with portrait_path.open("rb") as file, pytest.raises(TypeError, match="use predict"):
        face_gender.predict_batch(file)  # type: ignore[arg-type]  # an open file is one image, not lines
    stacked = face_gender.predict_batch(np.stack([pixels, pixels]))  # a 4-d array is a batch of images
    assert stacked == face_gender.predict_batch([pixels, pixels])


def test_batch_returns_errors_in_place_or_raises(portrait_path: Path, face_gender: FaceGender) -> None:
    results = face_gender.predict_batch([b"not an image", portrait_path], return_exceptions=True)
    assert isinstance(results[0], InvalidImageError)
    assert isinstance(results[1], list) and results[1]
    with pytest.raises(InvalidImageError):
        face_gender.predict_batch([portrait_path, b"not an image"])


def test_an_unexpected_failure_costs_only_its_image(portrait_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fg = FaceGender(settings=Settings(threads=1))
    detect = fg.detector.detect

    def fragile(pixels: np.ndarray, **options: Any) -> list[Detection]:
        if pixels.shape[:2] == (31, 29):
            raise RuntimeError("detector crashed")
        return detect(pixels, **options)

    monkeypatch.setattr(fg.detector, "detect", fragile)
    cursed = np.zeros((31, 29, 3), np.uint8)
    faces, failed = fg.predict_batch([portrait_path, cursed], return_exceptions=True)
    assert isinstance(faces, list) and faces
    assert isinstance(failed, InferenceFailedError)
    assert isinstance(failed.__cause__, RuntimeError)
    assert "crashed" not in failed.message
    with pytest.raises(RuntimeError):
        fg.predict_batch([portrait_path, cursed])


def test_threads_share_one_instance(portraits: list[Path], face_gender: FaceGender) -> None:
    expected = [[f.label for f in face_gender.predict(p)] for p in portraits]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda p: [f.label for f in face_gender.predict(p)], portraits * 3))
    assert got == expected * 3


def test_no_face_is_an_empty_list_and_detect_false_is_one_face(face_gender: FaceGender) -> None:
    grey = np.full((300, 400, 3), 128, np.uint8)
    assert face_gender.predict(grey) == []
    (whole,) = face_gender.predict(grey, detect=False)
    assert (whole.box.left, whole.box.top, whole.box.width, whole.box.height) == (0, 0, 400, 300)
    assert whole.model_version == face_gender.model_version
    assert whole.head_turn is None  # no keypoints to read it from


def test_pixel_limit_comes_from_settings(portrait_path: Path) -> None:
    small = FaceGender(settings=Settings(max_pixels=10_000))
    with pytest.raises(ImageTooLargeError):
        small.predict(portrait_path)


def test_missing_or_corrupt_model_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        FaceGender(settings=Settings(classifier_path=tmp_path / "absent.onnx"))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ModelError):
        FaceGender(settings=Settings(classifier_path=corrupt))


def test_a_big_jpeg_is_decoded_smaller_but_answered_in_full_size_pixels(
    portrait_path: Path, face_gender: FaceGender
) -> None:
    with Image.open(portrait_path) as image:
        big = image.convert("RGB").resize((image.width * 5, image.height * 5), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90)
    decoded = face_gender.decode(buffer.getvalue())
    assert (decoded.width, decoded.height) == big.size and decoded.pixels.shape[1] < big.width
    reduced = face_gender.predict(buffer.getvalue())
    full = face_gender.predict(np.asarray(big))  # an array is used at full size
    assert [f.label for f in reduced] == [f.label for f in full]
    for a, b in zip(reduced, full, strict=True):
        assert abs(a.box.left - b.box.left) < 0.03 * b.box.width and abs(a.box.top - b.box.top) < 0.03 * b.box.height
        assert a.box.width == pytest.approx(b.box.width, rel=0.03) and a.probability == pytest.approx(
            b.probability, abs=0.03
        )
    (whole,) = face_gender.predict(buffer.getvalue(), detect=False)
    assert (whole.box.width, whole.box.height) == big.size


def test_a_face_too_small_for_a_chip_at_the_detection_scale_is_cut_from_a_finer_decoding(
    portrait_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    face_gender = FaceGender(settings=Settings(min_face_size=150))
    with Image.open(portrait_path) as image:
        portrait = image.convert("RGB")
    canvas = Image.new("RGB", (4800, 3600), (190, 190, 190))
    canvas.paste(portrait.resize((portrait.width * 300 // portrait.height, 300)), (2000, 1500))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=92)
    scales: list[float] = []

    def recording(source: object, **kwargs: Any) -> DecodedImage:
        decoded = decode_image(source, **kwargs)  # type: ignore[arg-type]
        scales.append(decoded.pixels.shape[1] / decoded.width)
        return decoded

    monkeypatch.setattr("facegender.pipeline.decode_image", recording)
    faces = face_gender.predict(buffer.getvalue())
    # Found at half scale, where its chip would be enlarged; so cut from the photo decoded again in full.
    assert scales == [0.5, 1.0]
    full = face_gender.predict(np.asarray(canvas))
    assert [f.label for f in faces] == [f.label for f in full] and len(faces) == 1
    assert faces[0].probability == pytest.approx(full[0].probability, abs=0.03)
    assert faces[0].box.width == pytest.approx(full[0].box.width, rel=0.05)


def test_min_face_size_counts_pixels_of_the_photo_at_any_decode_scale() -> None:
    face_gender = FaceGender(settings=Settings(min_face_size=300))
    buffer = io.BytesIO()
    Image.new("RGB", (4800, 3600), (120, 110, 100)).save(buffer, "JPEG")
    decoded = face_gender.decode(buffer.getvalue())
    assert decoded.factor_x == 4  # the finest pass (a 1080-pixel window into 128) still shrinks it twice
    height, width = decoded.pixels.shape[:2]
    searched = face_gender.detector.smallest_face(width, height, downscale=decoded.factor_x) * decoded.factor_x
    assert searched == pytest.approx(face_gender.detector.smallest_face(decoded.width, decoded.height))
    assert searched <= 300


def test_turning_faces_upright_looks_again_only_at_unsure_faces_not_found_upright(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    turning = FaceGender(settings=Settings(turn_faces_upright=True))
    assert turning.orientation is not None
    asked: list[Detection] = []
    upright: list[float] = []
    turned_upright = turning.detector.turned_upright
    upright_probability = turning.orientation.upright_probability

    def counted(image: np.ndarray, face: Detection) -> object:
        asked.append(face)
        return turned_upright(image, face)

    def recorded(chips: np.ndarray) -> np.ndarray:
        upright.extend(probabilities := upright_probability(chips))
        return probabilities

    monkeypatch.setattr(turning.detector, "turned_upright", counted)
    monkeypatch.setattr(turning.orientation, "upright_probability", recorded)
    faces = [face for item in load_dataset(shared_data / "portraits")[::6] for face in turning.predict(item.path)]
    unsure = [f for f in faces if f.detection_score < SURE_UPRIGHT_SCORE and f.probability < UNSURE_READING]
    assert 0 < len(upright) == len(unsure) < len(faces)  # only faces found and read unsurely are asked about
    assert len(asked) == sum(p < UPRIGHT_PROBABILITY for p in upright) < len(unsure)


def test_an_orientation_model_for_other_chips_is_refused_at_start(
    utkface_subset: Callable[[int], Path], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    from facegender.cli import main

    data = str(utkface_subset(2000))
    with pytest.raises(SystemExit):
        main(["train-orientation", "--data", data, "--out", str(tmp_path), "--epochs", "1", "--chip-size", "96"])
    with pytest.raises(ModelError, match="takes 96 px chips, not the classifier's 128"):
        FaceGender(settings=Settings(turn_faces_upright=True, orientation_path=tmp_path / "orientation.onnx"))


def test_a_photo_s_pixels_are_kept_past_its_chips_only_while_a_face_may_be_turned(
    portrait_path: Path, face_gender: FaceGender
) -> None:
    assert face_gender._locate(face_gender.decode(portrait_path), detect=True).cut_from is None
    assert face_gender.orientation is None  # loaded only for the setting
    turning = FaceGender(settings=Settings(turn_faces_upright=True))
    upside_down = np.ascontiguousarray(np.rot90(load_image(portrait_path), 2))
    located = turning._locate(turning.decode(upside_down), detect=True)
    assert located.turnable and located.cut_from is not None


def test_turn_faces_upright_reads_photos_that_lost_their_orientation_as_upright(
    shared_data: Path, face_gender: FaceGender
) -> None:
    plain = face_gender
    turning = FaceGender(settings=Settings(turn_faces_upright=True))
    portraits = load_dataset(shared_data / "portraits")[::12]
    read_right = {"plain": 0, "turning": 0}
    for item in portraits:
        photo = load_image(item.path)
        upright = turning.predict(photo)
        assert upright == plain.predict(photo)  # a face already upright is left as it is
        for turns in (1, 2, 3):
            turned = np.ascontiguousarray(np.rot90(photo, turns))
            as_is, turned_back = plain.predict(turned), turning.predict(turned)
            assert [f.box for f in turned_back] == [f.box for f in as_is]  # boxes stay in the photo's pixels
            read_right["plain"] += bool(as_is) and as_is[0].label == item.label
            read_right["turning"] += bool(turned_back) and turned_back[0].label == item.label
    assert read_right["turning"] >= 0.95 * 3 * len(portraits)
    assert read_right["turning"] > read_right["plain"]  # turning adds what the classifier cannot do alone
