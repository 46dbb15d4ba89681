"""tools/teacher_probabilities.py: the soft targets that facegender train --teacher reads."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from facegender.chips import make_chips
from facegender.classify import FLOAT_CLASSIFIER_PATH, GenderClassifier
from facegender.data import load_dataset

TOOL = Path(__file__).resolve().parents[1] / "tools" / "teacher_probabilities.py"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("teacher_probabilities", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_equal_teachers_give_the_probabilities_of_one(shared_data: Path, tmp_path: Path) -> None:
    utkface = shared_data / "utkface"
    with (utkface / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:40]
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "file": str(utkface / row["file"])} for row in rows)
    out = tmp_path / "teacher.npz"
    command = [sys.executable, str(TOOL), "--data", str(labels), "--out", str(out), "--cache-dir", str(tmp_path)]
    subprocess.run([*command, str(FLOAT_CLASSIFIER_PATH), str(FLOAT_CLASSIFIER_PATH)], check=True, timeout=300)

    train_items = [item for item in load_dataset(labels) if item.split == "train"]
    assert train_items and len(train_items) < len(rows)  # the other splits play no part
    stored = np.load(out)
    assert stored["names"].tolist() == [item.path.name for item in train_items]
    teacher = GenderClassifier(model_path=FLOAT_CLASSIFIER_PATH, refine=False)
    chips = make_chips([item.path for item in train_items], size=teacher.input_size, cache_dir=tmp_path).chips
    np.testing.assert_allclose(stored["male"], teacher.predict(chips)[:, 1], atol=1e-5)


def test_descriptors_add_a_held_out_probe(utkface_subset: Callable[[int], Path], tmp_path: Path) -> None:
    labels = utkface_subset(100)
    items = load_dataset(labels)
    assert {item.split for item in items} >= {"train", "val"}
    # Descriptors that carry the label, noisily: the probe must learn it from the other folds.
    rng = np.random.default_rng(2)
    descriptors = rng.normal(size=(len(items), 8)).astype(np.float32)
    descriptors[:, 0] += 2.0 * np.array([2 * item.target - 1 for item in items])
    described = tmp_path / "descriptors.npz"
    np.savez(described, names=np.array([item.path.name for item in items]), descriptors=descriptors)
    command = [
        sys.executable,
        str(TOOL),
        "--data",
        str(labels),
        "--cache-dir",
        str(tmp_path),
        str(FLOAT_CLASSIFIER_PATH),
    ]
    plain, with_probe = tmp_path / "plain.npz", tmp_path / "probe.npz"
    subprocess.run([*command, "--out", str(plain)], check=True, timeout=300)
    printed = subprocess.run(
        [*command, "--out", str(with_probe), "--descriptors", str(described)],
        check=True,
        timeout=300,
        capture_output=True,
        text=True,
    ).stdout
    assert "descriptor probe: held-out accuracy" in printed

    train = [item for item in items if item.split == "train"]
    tool = _tool()
    held_out, _ = tool._probe_teacher(
        train,
        [item for item in items if item.split == "val"],
        {item.path.name: row for item, row in zip(items, descriptors, strict=True)},
    )
    assert np.mean((held_out > 0) == tool._targets(train)) > 0.9
    temperature = float(printed.split("temperature ")[1].split()[0])
    models, probe = np.load(plain)["male"].astype(np.float64), np.load(with_probe)["male"].astype(np.float64)
    assert np.load(with_probe)["names"].tolist() == [item.path.name for item in train]
    models = np.clip(models, 1e-6, 1 - 1e-6)  # as stored in float32, some are 1.0
    expected = 1 / (1 + np.exp(-(np.log(models / (1 - models)) + 0.3 * held_out) / temperature))
    np.testing.assert_allclose(probe, expected, atol=1e-3)
    assert np.abs(probe - models).max() > 0.05  # the probe moved some chips
