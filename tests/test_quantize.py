"""The shipped int8 gender model, its float refinement, and the command that makes it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from onnxruntime import GraphOptimizationLevel

from facegender.chips import make_chips
from facegender.classify import DEFAULT_CLASSIFIER_PATH, FLOAT_CLASSIFIER_PATH, SECOND_OPINION_PATH, GenderClassifier
from facegender.data import load_dataset
from facegender.errors import ModelError


@pytest.fixture(scope="module")
def val_chips(shared_data: Path) -> np.ndarray:
    items = [item for item in load_dataset(shared_data / "utkface") if item.split == "val"][::20]
    size = GenderClassifier(model_path=FLOAT_CLASSIFIER_PATH).input_size
    return make_chips([item.path for item in items], size=size, workers=1).chips


def test_the_shipped_model_is_int8_refined_by_the_second_opinion() -> None:
    shipped = GenderClassifier(model_path=DEFAULT_CLASSIFIER_PATH)
    assert shipped.version.endswith("+int8") and shipped.refiner is not None
    assert shipped.refiner.version + "+int8" == shipped.version and 0 < shipped.refine_margin < 0.5
    assert shipped.refiner.version == GenderClassifier(model_path=SECOND_OPINION_PATH).version
    # The refining model runs on few chips: its session is the compact one (no arena, the optimised graph alone).
    assert shipped._session.get_session_options().enable_cpu_mem_arena
    assert not shipped.refiner._session.get_session_options().enable_cpu_mem_arena
    assert (
        shipped.refiner._session.get_session_options().graph_optimization_level
        == GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    assert GenderClassifier(model_path=DEFAULT_CLASSIFIER_PATH, refine=False).refiner is None


def test_an_int8_model_beside_another_refining_model_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    shutil.copy(DEFAULT_CLASSIFIER_PATH, tmp_path / DEFAULT_CLASSIFIER_PATH.name)
    other = onnx.load(str(SECOND_OPINION_PATH))
    other.doc_string = "refitted"
    onnx.save(other, str(tmp_path / SECOND_OPINION_PATH.name))
    with pytest.raises(ModelError, match="quantize again"):
        GenderClassifier(model_path=tmp_path / DEFAULT_CLASSIFIER_PATH.name)


def test_unsure_chips_get_the_second_opinion_and_the_rest_stay_close(val_chips: np.ndarray) -> None:
    shipped = GenderClassifier(model_path=DEFAULT_CLASSIFIER_PATH)
    alone = GenderClassifier(model_path=DEFAULT_CLASSIFIER_PATH, refine=False).predict(val_chips)
    exact = GenderClassifier(model_path=SECOND_OPINION_PATH).predict(val_chips)
    answers = shipped.predict(val_chips)
    unsure = shipped.unsure(alone)
    np.testing.assert_allclose(answers[unsure], exact[unsure], atol=1e-6)
    np.testing.assert_array_equal(answers[~unsure], alone[~unsure])
    assert np.abs(answers - exact).mean() < 0.03
    np.testing.assert_allclose(answers.sum(axis=1), 1.0, atol=1e-5)  # the softmax stays float
    assert len(np.unique(answers[:, 0])) > len(answers) // 2  # not in steps of 1/255
    assert (answers.argmax(axis=1) == exact.argmax(axis=1)).mean() >= 0.98


def test_the_rewritten_float_graph_gives_the_same_probabilities(val_chips: np.ndarray, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from facegender.quantize import prepare_float_graph

    path = tmp_path / "prepared.onnx"
    prepared = prepare_float_graph(onnx.load(str(FLOAT_CLASSIFIER_PATH)))
    onnx.save(prepared, str(path))
    assert sum(node.op_type == "Conv" for node in prepared.graph.node) == 53  # one backbone (52) and the normalisation
    expected = GenderClassifier(model_path=FLOAT_CLASSIFIER_PATH).predict(val_chips[:16])
    np.testing.assert_allclose(GenderClassifier(model_path=path).predict(val_chips[:16]), expected, atol=1e-5)


def test_without_the_mirror_the_graph_sees_the_chip_alone(val_chips: np.ndarray, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from facegender.quantize import prepare_float_graph

    path = tmp_path / "alone.onnx"
    prepared = prepare_float_graph(onnx.load(str(FLOAT_CLASSIFIER_PATH)), mirror=False)
    onnx.save(prepared, str(path))
    assert not any(node.op_type in ("Slice", "Concat") for node in prepared.graph.node)  # no mirror image made
    alone, both = GenderClassifier(model_path=path), GenderClassifier(model_path=FLOAT_CLASSIFIER_PATH)
    # A chip that is its own mirror image gets the mirror-averaged answer; other chips do not.
    symmetric = np.concatenate([val_chips[:8, :, :64], val_chips[:8, :, :64][:, :, ::-1]], axis=2)
    np.testing.assert_allclose(alone.predict(symmetric), both.predict(symmetric), atol=1e-5)
    assert np.abs(alone.predict(val_chips[:16]) - both.predict(val_chips[:16])).max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("refine_with", [None, SECOND_OPINION_PATH], ids=["float", "second-opinion"])
def test_quantize_writes_a_refined_int8_model_and_its_validation_report(
    utkface_subset: Callable[[int], Path], tmp_path: Path, refine_with: Path | None
) -> None:
    pytest.importorskip("onnx")
    from facegender.quantize import quantize_classifier

    subset = utkface_subset(150)
    out = tmp_path / "models" / "gender-int8.onnx"
    result = quantize_classifier(
        model=FLOAT_CLASSIFIER_PATH, data=subset, out=out, calibration_images=32, refine_with=refine_with
    )
    report = json.loads(result.report_path.read_text())
    assert result.report_path == out.with_name("gender-int8.onnx.json")
    assert report["calibration_images"] == 32 and report["validation_images"] == result.float_scores.count > 0
    assert report["fit_to_ship"] == result.fit_to_ship and 0 <= result.refined_share <= 1
    quantized = GenderClassifier(model_path=out)  # finds the refining model through a relative path
    assert quantized.refiner is not None and quantized.version == quantized.refiner.version + "+int8"
    refiner = GenderClassifier(model_path=refine_with or FLOAT_CLASSIFIER_PATH)
    assert quantized.refiner.version == refiner.version
    assert out.stat().st_size < 0.7 * FLOAT_CLASSIFIER_PATH.stat().st_size
