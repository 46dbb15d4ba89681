"""dlib's network in PyTorch, tuned for gender; saved and read back as the second opinion reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegender.chips import make_chips
from facegender.data import load_dataset
from facegender.errors import DatasetError, ModelError

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("dlib")  # the descriptors extra, which brings dlib's model files

from facegender.classify import CLASSIFIER_INPUT_NAME  # noqa: E402  (after the extras are known to be there)
from facegender.training.second_opinion import (  # noqa: E402
    DLIB_NETWORK_FILE,
    DlibAffine,
    DlibConvolution,
    DlibNetwork,
    chip_descriptor_model,
    descriptor_crop_side,
    dlib_models_folder,
    dlib_structure,
    load_dlib_network,
    read_dlib_network,
    save_dlib_network,
)
from facegender.training.second_opinion_tuning import (  # noqa: E402
    DlibGenderNet,
    TuningRecord,
    tune_dlib_network,
)

CHIP_SIZE = 128


@pytest.fixture(scope="module")
def dlib_network() -> DlibNetwork:
    return read_dlib_network(dlib_models_folder() / DLIB_NETWORK_FILE)


@pytest.fixture(scope="module")
def labelled_chips(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """48 UTKFace chips with a face found, made by the serving pipeline's code, and their targets."""
    items = load_dataset(shared_data / "utkface")[::400][:48]
    chips = make_chips([item.path for item in items], size=CHIP_SIZE, cache_dir=tmp_path_factory.mktemp("chips"))
    targets = np.array([item.target for item in items])
    return chips.chips[chips.found], targets[chips.found]


def _onnx_descriptors(network: DlibNetwork, chips: np.ndarray) -> np.ndarray:
    model = chip_descriptor_model(network, chip_size=CHIP_SIZE)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {CLASSIFIER_INPUT_NAME: chips})[0])


def _torch_descriptors(network: DlibNetwork, chips: np.ndarray) -> np.ndarray:
    model = DlibGenderNet(network, crop_side=descriptor_crop_side(CHIP_SIZE)).eval()
    with torch.no_grad():
        return model.descriptors(torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255).numpy()


def test_the_pytorch_copy_describes_faces_as_the_onnx_graph_does(
    dlib_network: DlibNetwork, labelled_chips: tuple[np.ndarray, np.ndarray]
) -> None:
    chips = labelled_chips[0][:8]
    expected = _onnx_descriptors(dlib_network, chips)
    np.testing.assert_allclose(_torch_descriptors(dlib_network, chips), expected, atol=1e-4)
    # A chip cut down around the same centre shows the network the same pixels: room to move for augmentation.
    np.testing.assert_allclose(_torch_descriptors(dlib_network, chips[:, 8:120, 8:120]), expected, atol=1e-4)
    assert np.linalg.norm(expected[0] - expected[1]) > 0.3  # different people: the comparison can fail


def test_a_saved_network_reads_back_to_within_float16(dlib_network: DlibNetwork, tmp_path: Path) -> None:
    path = tmp_path / "network.npz"
    save_dlib_network(dlib_network, path)
    loaded = load_dlib_network(path)
    assert loaded.channel_means == dlib_network.channel_means and loaded.input_size == dlib_network.input_size
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in dlib_network.layers]
    for ours, theirs in zip(loaded.layers, dlib_network.layers, strict=True):
        if isinstance(ours, DlibConvolution):
            assert isinstance(theirs, DlibConvolution) and (ours.stride, ours.padding) == (
                theirs.stride,
                theirs.padding,
            )
            np.testing.assert_allclose(ours.weights, theirs.weights, rtol=1e-3, atol=1e-6)
        elif isinstance(ours, DlibAffine):
            assert isinstance(theirs, DlibAffine)
            np.testing.assert_allclose(ours.gamma, theirs.gamma, rtol=1e-3)
        else:
            assert ours == theirs
    assert dlib_structure(loaded) == dlib_structure(dlib_network)


def test_a_file_that_is_not_a_saved_network_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.npz"
    np.savez(other, something=np.zeros(3))
    with pytest.raises(ModelError, match="not a saved dlib network"):
        load_dlib_network(other)


def test_tuning_moves_every_weight_and_keeps_the_architecture(
    dlib_network: DlibNetwork, labelled_chips: tuple[np.ndarray, np.ndarray]
) -> None:
    chips, targets = labelled_chips
    records: list[TuningRecord] = []
    tuned = tune_dlib_network(
        network=dlib_network,
        chips=chips[:32, 8:120, 8:120],
        targets=targets[:32],
        crop_side=descriptor_crop_side(CHIP_SIZE),
        validation=(chips[32:], targets[32:]),
        epochs=2,
        batch_size=16,
        learning_rate=1e-5,
        log=records.append,
    )
    assert [record.epoch for record in records] == [1, 2]
    assert all(record.val_accuracy is not None and 0 <= record.val_accuracy <= 1 for record in records)
    assert dlib_structure(tuned) == dlib_structure(dlib_network)
    first = next(layer for layer in tuned.layers if isinstance(layer, DlibConvolution))
    original = next(layer for layer in dlib_network.layers if isinstance(layer, DlibConvolution))
    assert first.weights.shape == original.weights.shape and not np.array_equal(first.weights, original.weights)
    assert not np.array_equal(tuned.projection, dlib_network.projection)
    # Small steps: the tuned network still describes faces much as dlib's does.
    before, after = _onnx_descriptors(dlib_network, chips[:4]), _onnx_descriptors(tuned, chips[:4])
    cosine = (before * after).sum(axis=1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
    assert (cosine > 0.9).all()


def test_chips_smaller_than_what_the_network_sees_are_refused(dlib_network: DlibNetwork) -> None:
    with pytest.raises(DatasetError, match="at least 102 px"):
        tune_dlib_network(
            network=dlib_network,
            chips=np.zeros((4, 96, 96, 3), np.uint8),
            targets=np.zeros(4, np.int64),
            crop_side=descriptor_crop_side(CHIP_SIZE),
        )
