"""How FACEGENDER_TURN_FACES_UPRIGHT's unsure reading and orientation model decide, on validation chips turned.

    python tools/unsure_reading.py --data ../shared/data/utkface
    python tools/unsure_reading.py --data ../shared/data/utkface --every 4      # every 4th validation chip

Each chip is turned by 0, 90, 180 and 270 degrees; the shipped detector finds its largest face and the shipped
gender model reads its chip. Where the detector finds the face surer after a quarter turn
(``BlazeFaceDetector.turned_upright``), the chip cut turned upright is read too. For each threshold, the service
with the setting on reads a face again turned upright only when the first reading's probability is below the
threshold: prints how many chips each threshold gets right and the share of the faces it looks at four ways
(``none``: every face the detector leaves to the looks, as without ``UNSURE_READING``). Then the same at
``UNSURE_READING`` for each probability of an upright chip (``OrientationClassifier``) at which a face is spared
the looks (``UPRIGHT_PROBABILITY``; ``none``: no face spared so). The train and test splits and the portraits
play no part.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from upright_margin import print_turns_header

from facegender import FaceGender
from facegender.align import face_chip
from facegender.data import load_dataset
from facegender.decode import load_image
from facegender.orientation import OrientationClassifier
from facegender.pipeline import UNSURE_READING, UPRIGHT_PROBABILITY
from facegender.results import LABELS

THRESHOLDS = (0.9, 0.95, UNSURE_READING, 0.98, 0.99, 0.995)
UPRIGHT_PROBABILITIES = (UPRIGHT_PROBABILITY, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


class _Reading(NamedTuple):
    """One turned chip: the first reading's probability, whether the detector may turn the face, the orientation
    model's probability that its chip is upright, and whether it is right as read and after turning upright
    where the detector turns it."""

    probability: float
    may_turn: bool
    upright: float
    right: bool
    right_turned: bool


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the UTKFace folder")
    parser.add_argument("--every", type=int, default=1, help="use every N-th validation chip")
    args = parser.parse_args(argv)

    face_gender = FaceGender()
    orientation = OrientationClassifier()
    size = face_gender.classifier.input_size
    items = [item for item in load_dataset(args.data) if item.split == "val"][:: args.every]
    readings: dict[int, list[_Reading]] = {turned: [] for turned in range(4)}
    for item in items:
        chip = load_image(item.path)
        for turned in range(4):
            image = np.ascontiguousarray(np.rot90(chip, turned))
            faces = face_gender.detector.detect(image)
            if not faces:
                readings[turned].append(_Reading(1.0, False, 1.0, False, False))
                continue
            face = faces[0]
            chip_as_found = face_chip(image, face, size=size)[None]
            first = face_gender.classifier.predict(chip_as_found)[0]
            right = LABELS[int(np.argmax(first))] == item.label
            upright = face_gender.detector.turned_upright(image, face)
            if upright is not None:
                again = face_gender.classifier.predict(face_chip(upright.pixels, upright.detection, size=size)[None])
                right_turned = LABELS[int(np.argmax(again[0]))] == item.label
            else:
                right_turned = right
            readings[turned].append(
                _Reading(
                    probability=float(first.max()),
                    may_turn=face_gender.detector.may_turn_upright(face),
                    upright=float(orientation.upright_probability(chip_as_found)[0]),
                    right=right,
                    right_turned=right_turned,
                )
            )

    print(f"{len(items)} validation chips; right (share of the faces looked at four ways)\n")
    print_turns_header("unsure reading")
    for threshold in (*THRESHOLDS, None):
        _print_row(readings, threshold, lambda r, t=threshold: t is None or r.probability < t)
    print(f"\nAt the unsure reading {UNSURE_READING:g}, by the probability of an upright chip that spares the looks\n")
    print_turns_header("upright probability")
    for spared in (*UPRIGHT_PROBABILITIES, None):
        _print_row(
            readings,
            spared,
            lambda r, s=spared: r.probability < UNSURE_READING and (s is None or r.upright < s),
        )


def _print_row(readings: dict[int, list[_Reading]], value: float | None, looks: Callable[[_Reading], bool]) -> None:
    """One row: for each turn, the chips right where the faces that the detector may turn and that ``looks`` are
    looked at, and the share of the faces looked at."""
    cells = []
    for turned in range(4):
        looked = [reading.may_turn and looks(reading) for reading in readings[turned]]
        right = sum(
            reading.right_turned if look else reading.right
            for look, reading in zip(looked, readings[turned], strict=True)
        )
        cells.append(f"{right} ({np.mean(looked):.3f})")
    print(f"| {'none' if value is None else f'{value:g}'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
