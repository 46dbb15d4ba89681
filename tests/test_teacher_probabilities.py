"""tools/teacher_probabilities.py: the soft targets that facegender train --teacher reads."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np

from facegender.chips import make_chips
from facegender.classify import FLOAT_CLASSIFIER_PATH, GenderClassifier
from facegender.data import load_dataset

TOOL = Path(__file__).resolve().parents[1] / "tools" / "teacher_probabilities.py"


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
