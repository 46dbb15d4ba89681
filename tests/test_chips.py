"""make_chips: the serving pipeline's chips for a whole dataset, cached; photos may be turned first."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facegender.align import face_chip
from facegender.chips import make_chips
from facegender.data import load_dataset
from facegender.decode import load_image
from facegender.detect import BlazeFaceDetector


def test_turned_photos_give_the_chips_of_their_faces_as_turned_and_are_cached_apart(
    shared_data: Path, tmp_path: Path
) -> None:
    paths = [item.path for item in load_dataset(shared_data / "utkface")[::2000]]
    detector = BlazeFaceDetector(threads=1)
    for quarter_turns in (0, 1, 2):
        chip_set = make_chips(paths, size=96, cache_dir=tmp_path, workers=1, quarter_turns=quarter_turns)
        for path, chip, found in zip(paths, chip_set.chips, chip_set.found, strict=True):
            turned = np.ascontiguousarray(np.rot90(load_image(path), quarter_turns))
            faces = detector.detect(turned)
            assert found == bool(faces)
            if faces:
                assert np.array_equal(chip, face_chip(turned, faces[0], size=96))
    assert len(list(tmp_path.glob("*.npz"))) == 3
    cached = make_chips(paths, size=96, cache_dir=tmp_path, workers=1, quarter_turns=1)
    assert np.array_equal(cached.chips, make_chips(paths, size=96, workers=1, quarter_turns=1).chips)
