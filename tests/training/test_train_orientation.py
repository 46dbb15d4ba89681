"""facegender train-orientation: a short run exports a model that the service's orientation class loads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from facegender.cli import main
from facegender.orientation import OrientationClassifier
from facegender.training.orientation import _mirror_half


def test_one_epoch_on_64_photos_exports_a_loadable_model(utkface_subset: Callable[[int], Path], tmp_path: Path) -> None:
    out = tmp_path / "model"
    args = ["train-orientation", "--data", str(utkface_subset(100)), "--out", str(out), "--epochs", "1"]
    with pytest.raises(SystemExit) as exited:
        main([*args, "--limit", "64", "--cache-dir", str(tmp_path / "chips"), "--model-version", "0.1.0"])
    assert exited.value.code == 0
    orientation = OrientationClassifier(model_path=out / "orientation.onnx")
    assert (orientation.name, orientation.version, orientation.input_size) == ("facegender-orientation", "0.1.0", 128)
    chips = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    upright = orientation.upright_probability(chips)
    assert upright.shape == (3,) and ((upright >= 0) & (upright <= 1)).all()
    summary = json.loads((out / "orientation.json").read_text())
    assert summary["best_epoch"] == 1 and summary["counts"]["train"] > 200  # 64 photos, four turns each


def test_a_mirrored_chip_is_labelled_with_the_turns_that_its_face_shows() -> None:
    torch = pytest.importorskip("torch")
    face = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    chips = torch.from_numpy(np.stack([np.rot90(face, turns).copy() for turns in range(4)] * 8))
    turns = torch.arange(4).repeat(8)
    x, y = _mirror_half(chips, turns, torch.Generator().manual_seed(0))
    mirrored = 0
    for chip, label in zip(x.numpy(), y.tolist(), strict=True):
        if np.array_equal(chip, np.rot90(face, label)):
            continue
        assert np.array_equal(chip, np.rot90(np.fliplr(face), label))
        mirrored += 1
    assert 0 < mirrored < len(x)
