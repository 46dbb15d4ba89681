"""The shipped model, through the whole pipeline, on data it never trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegender import FaceGender
from facegender.data import load_dataset

pytestmark = pytest.mark.slow


def test_shipped_model_on_a_fixed_500_chip_slice_of_the_test_split(shared_data: Path, face_gender: FaceGender) -> None:
    test_items = [item for item in load_dataset(shared_data / "utkface") if item.split == "test"]
    step = len(test_items) / 500
    sample = [test_items[int(i * step)] for i in range(500)]
    results = face_gender.predict_batch([item.path for item in sample])
    found = sum(bool(faces) for faces in results)
    correct = sum(bool(faces) and faces[0].label == item.label for item, faces in zip(sample, results, strict=True))
    assert found / 500 >= 0.99
    assert correct / 500 >= 0.93


def test_shipped_model_end_to_end_on_portraits(shared_data: Path, face_gender: FaceGender) -> None:
    items = load_dataset(shared_data / "portraits")
    results = face_gender.predict_batch([item.path for item in items])
    correct = sum(bool(faces) and faces[0].label == item.label for item, faces in zip(items, results, strict=True))
    # Issue #2's floor; the shipped model measures 0.995 (reports/model/report.md).
    assert correct / len(items) >= 0.97


def test_probabilities_are_consistent(portrait_path: Path, face_gender: FaceGender) -> None:
    (face, *_) = face_gender.predict(portrait_path)
    assert abs(sum(face.probabilities.values()) - 1) < 1e-5
    assert face.probability == max(face.probabilities.values()) >= 0.5
    assert face.model_version == face_gender.model_version
