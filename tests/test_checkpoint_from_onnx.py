"""tools/checkpoint_from_onnx.py: a training checkpoint rebuilt from an exported gender model."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from facegender.chips import make_chips
from facegender.classify import FLOAT_CLASSIFIER_PATH, GenderClassifier
from facegender.data import load_dataset

torch = pytest.importorskip("torch")

from facegender.training.network import GenderNet  # noqa: E402  (after the [train] extra is known to be there)
from facegender.training.train import _Exportable  # noqa: E402

TOOL = Path(__file__).resolve().parents[1] / "tools" / "checkpoint_from_onnx.py"


def test_the_shipped_float_model_comes_back_as_a_network_that_answers_as_it_does(
    utkface_subset: Callable[[int], Path], tmp_path: Path
) -> None:
    labels = utkface_subset(200)
    out = tmp_path / "shipped.pt"
    printed = subprocess.run(
        [
            sys.executable,
            str(TOOL),
            "--data",
            str(labels),
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path),
            str(FLOAT_CLASSIFIER_PATH),
        ],
        check=True,
        timeout=300,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"largest probability difference (\S+) on (\d+) chips", printed)
    assert match is not None and float(match[1]) < 1e-4 and int(match[2]) > 50

    net = GenderNet()
    net.load_trained(out)
    classifier = GenderClassifier(model_path=FLOAT_CLASSIFIER_PATH, refine=False)
    paths = [item.path for item in load_dataset(labels) if item.split != "train"]
    chips = torch.from_numpy(make_chips(paths, size=classifier.input_size, cache_dir=tmp_path).chips)
    temperature = float(
        {prop.key: prop.value for prop in onnx.load(FLOAT_CLASSIFIER_PATH).metadata_props}["temperature"]
    )
    with torch.no_grad():
        rebuilt = _Exportable(net.eval(), temperature)(chips).numpy()
    assert abs(rebuilt - classifier.predict(chips.numpy())).max() < 1e-4  # chips the tool did not compare
