"""dlib's network converted to ONNX, and the second opinion built from it with the gender model."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegender.chips import make_chips
from facegender.classify import FLOAT_CLASSIFIER_PATH, SECOND_OPINION_PATH, GenderClassifier
from facegender.data import load_dataset
from facegender.errors import ModelError

onnx = pytest.importorskip("onnx")
dlib = pytest.importorskip("dlib")
ort = pytest.importorskip("onnxruntime")

from facegender.training.second_opinion import (  # noqa: E402  (after the extras are known to be there)
    DLIB_INPUT_SIZE,
    build_second_opinion,
    dlib_models_folder,
    dlib_network_model,
    read_dlib_network,
)

DLIB_NETWORK = "dlib_face_recognition_resnet_model_v1.dat"


def _faces(shared_data: Path, count: int) -> np.ndarray:
    source = shared_data / "utkface"
    with (source / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:: 21_000 // count][:count]
    size = (DLIB_INPUT_SIZE, DLIB_INPUT_SIZE)
    return np.stack([np.asarray(Image.open(source / row["file"]).convert("RGB").resize(size)) for row in rows])


def test_the_converted_network_gives_dlibs_own_descriptors(shared_data: Path, tmp_path: Path) -> None:
    network = read_dlib_network(dlib_models_folder() / DLIB_NETWORK)
    assert network.input_size == DLIB_INPUT_SIZE and network.projection.shape == (256, 128)
    assert sum(layer.__class__.__name__ == "DlibConvolution" for layer in network.layers) == 29
    path = tmp_path / "dlib.onnx"
    onnx.save(dlib_network_model(network), str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    faces = _faces(shared_data, 6)
    ours = session.run(None, {"images": faces})[0]
    reference = dlib.face_recognition_model_v1(str(dlib_models_folder() / DLIB_NETWORK))
    theirs = np.array([reference.compute_face_descriptor(np.ascontiguousarray(face)) for face in faces])
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert np.linalg.norm(theirs[0] - theirs[1]) > 0.3  # different people: the comparison can fail


def test_a_file_that_is_not_dlibs_network_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.dat"
    other.write_bytes(b"\x01\x01\x01\x05hello")
    with pytest.raises(ModelError, match="not a dlib network"):
        read_dlib_network(other)


@pytest.mark.slow
def test_second_opinion_joins_dlib_to_the_gender_model(utkface_subset: Callable[[int], Path], tmp_path: Path) -> None:
    subset = utkface_subset(20)
    out = tmp_path / "second.onnx"
    result = build_second_opinion(model=FLOAT_CLASSIFIER_PATH, data=subset, out=out, cache_dir=tmp_path)
    second = GenderClassifier(model_path=out)
    gender = GenderClassifier(model_path=FLOAT_CLASSIFIER_PATH)
    assert second.input_size == gender.input_size and second.version == gender.version + "+dlib"
    report = json.loads(result.report_path.read_text())
    assert result.report_path == out.with_name("second.onnx.json") and report["stack"] == list(result.stack)
    # The gender model's log-odds count, and so does the probe's: the stack learnt to weigh both.
    assert result.stack[0] > 0.3 and result.stack[1] > 0.05

    val = [item for item in load_dataset(subset) if item.split == "val"]
    chips = make_chips([item.path for item in val], size=gender.input_size, cache_dir=tmp_path)
    probabilities = second.predict(chips.chips)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    targets = np.array([item.target for item in val])
    right = (probabilities.argmax(axis=1) == targets) & chips.found
    assert right.mean() == pytest.approx(result.second_opinion_accuracy)
    assert result.second_opinion_accuracy > 0.85  # a few hundred images still make a sensible probe
    # Where the gender model is sure, the second opinion agrees with it.
    sure = gender.predict(chips.chips).max(axis=1) > 0.99
    assert sure.any() and (probabilities[sure].argmax(axis=1) == gender.predict(chips.chips)[sure].argmax(axis=1)).all()


def test_the_shipped_second_opinion_names_what_it_is_made_of() -> None:
    metadata = onnx.load(str(SECOND_OPINION_PATH), load_external_data=False).metadata_props
    props = {prop.key: prop.value for prop in metadata}
    assert props["gender_model_sha256"] == hashlib.sha256(FLOAT_CLASSIFIER_PATH.read_bytes()).hexdigest()
    assert "dlib" in props["second_opinion"] and len(props["stack"].split(",")) == 3
