"""tools/face_descriptors.py: dlib's face descriptors, the input of the descriptor teacher."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

TOOL = Path(__file__).resolve().parents[1] / "tools" / "face_descriptors.py"


def test_a_face_and_its_mirror_image_are_described_alike(shared_data: Path, tmp_path: Path) -> None:
    utkface = shared_data / "utkface"
    with (utkface / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    man, woman = rows[0], rows[5000]  # a white man of 100 and an Asian woman of 25
    assert (man["gender"], woman["gender"]) == ("male", "female")
    mirrored = tmp_path / "mirrored.png"
    ImageOps.mirror(Image.open(utkface / man["file"])).save(mirrored)
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "gender"])
        writer.writeheader()
        for path, gender in ((utkface / man["file"], "male"), (utkface / woman["file"], "female"), (mirrored, "male")):
            writer.writerow({"file": str(path), "gender": gender})
    out = tmp_path / "descriptors.npz"
    command = [sys.executable, str(TOOL), "--data", str(labels), "--out", str(out), "--processes", "1"]
    subprocess.run([*command, "--splits", "train", "val", "test"], check=True, timeout=300)

    stored = np.load(out)
    names = stored["names"].tolist()
    assert sorted(names) == sorted([Path(man["file"]).name, Path(woman["file"]).name, "mirrored.png"])
    vectors = dict(zip(names, stored["descriptors"], strict=True))
    assert all(vector.shape == (128,) and vector.dtype == np.float32 for vector in vectors.values())
    same = np.linalg.norm(vectors[Path(man["file"]).name] - vectors["mirrored.png"])
    other = np.linalg.norm(vectors[Path(man["file"]).name] - vectors[Path(woman["file"]).name])
    assert same < 0.4 < 0.8 < other  # dlib reads distances under 0.6 as one person
