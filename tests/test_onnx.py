"""onnxruntime sessions: the compact form answers as the plain one does, also where no temporary file can be made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from facegender import _onnx
from facegender.classify import CLASSIFIER_INPUT_NAME, FLOAT_CLASSIFIER_PATH
from facegender.errors import ModelError


def _probabilities(session: ort.InferenceSession) -> np.ndarray:
    chips = np.random.default_rng(0).integers(0, 256, size=(3, 128, 128, 3), dtype=np.uint8)
    return np.asarray(session.run(None, {CLASSIFIER_INPUT_NAME: chips})[0])


def test_a_compact_session_loads_the_optimised_graph_and_answers_the_same() -> None:
    plain = _onnx.create_session(FLOAT_CLASSIFIER_PATH, threads=1)
    compact = _onnx.create_session(FLOAT_CLASSIFIER_PATH, threads=1, compact=True)
    options = compact.get_session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert not options.enable_cpu_mem_arena and plain.get_session_options().enable_cpu_mem_arena
    np.testing.assert_allclose(_probabilities(compact), _probabilities(plain), atol=1e-5)


def test_without_a_temporary_folder_a_compact_session_loads_the_model_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_folder(**_: object) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(_onnx.tempfile, "TemporaryDirectory", no_folder)
    compact = _onnx.create_session(FLOAT_CLASSIFIER_PATH, threads=1, compact=True)
    assert compact.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    plain = _onnx.create_session(FLOAT_CLASSIFIER_PATH, threads=1)
    np.testing.assert_allclose(_probabilities(compact), _probabilities(plain), atol=1e-5)


@pytest.mark.parametrize("compact", [False, True])
def test_a_missing_or_broken_model_raises_model_error(tmp_path: Path, compact: bool) -> None:
    with pytest.raises(ModelError, match="not found"):
        _onnx.create_session(tmp_path / "absent.onnx", threads=1, compact=compact)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"cannot load model broken\.onnx"):
        _onnx.create_session(broken, threads=1, compact=compact)


@pytest.mark.parametrize(
    ("metadata", "refused"),
    [
        ({"input_size": "128", "name": "n", "version": "1"}, False),
        ({"name": "n", "version": "1"}, True),
        ({"input_size": "large", "name": "n", "version": "1"}, True),
    ],
)
def test_model_metadata_must_name_each_field_and_a_whole_chip_size(
    tmp_path: Path, metadata: dict[str, str], refused: bool
) -> None:
    onnx = pytest.importorskip("onnx")
    chips = onnx.helper.make_tensor_value_info("chips", onnx.TensorProto.UINT8, [None, 128, 128, 3])
    same = onnx.helper.make_tensor_value_info("same", onnx.TensorProto.UINT8, [None, 128, 128, 3])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["chips"], ["same"])], "g", [chips], [same])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    onnx.helper.set_model_props(model, metadata)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    session = _onnx.create_session(path, threads=1)
    if refused:
        with pytest.raises(ModelError, match=r"model\.onnx lacks facegender metadata \(input_size, name, version\)"):
            _onnx.model_metadata(session, path, "input_size", "name", "version")
    else:
        assert _onnx.model_metadata(session, path, "input_size", "name", "version")["input_size"] == "128"
