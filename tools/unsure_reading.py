"""How FACEGENDER_TURN_FACES_UPRIGHT's unsure reading decides, on the validation chips turned four ways.

    python tools/unsure_reading.py --data ../shared/data/utkface
    python tools/unsure_reading.py --data ../shared/data/utkface --every 4      # every 4th validation chip

Each chip is turned by 0, 90, 180 and 270 degrees; the shipped detector finds its largest face and the shipped
gender model reads its chip. Where the detector finds the face surer after a quarter turn
(``BlazeFaceDetector.turned_upright``), the chip cut turned upright is read too. For each threshold, the service
with the setting on reads a face again turned upright only when the first reading's probability is below the
threshold: prints how many chips each threshold gets right and the share of the faces it looks at four ways
(``none``: every face the detector leaves to the looks, as without ``UNSURE_READING``). The train and test
splits and the portraits play no part.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from upright_margin import print_turns_header

from facegender import FaceGender
from facegender.align import face_chip
from facegender.data import load_dataset
from facegender.decode import load_image
from facegender.pipeline import UNSURE_READING
from facegender.results import LABELS

THRESHOLDS = (0.9, 0.95, UNSURE_READING, 0.98, 0.99, 0.995)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the UTKFace folder")
    parser.add_argument("--every", type=int, default=1, help="use every N-th validation chip")
    args = parser.parse_args(argv)

    face_gender = FaceGender()
    size = face_gender.classifier.input_size
    items = [item for item in load_dataset(args.data) if item.split == "val"][:: args.every]
    # per turn: (probability of the first reading, whether the detector may turn the face, right as read,
    # right as read after turning upright where the detector turns it)
    readings: dict[int, list[tuple[float, bool, bool, bool]]] = {turned: [] for turned in range(4)}
    for item in items:
        chip = load_image(item.path)
        for turned in range(4):
            image = np.ascontiguousarray(np.rot90(chip, turned))
            faces = face_gender.detector.detect(image)
            if not faces:
                readings[turned].append((1.0, False, False, False))
                continue
            face = faces[0]
            first = face_gender.classifier.predict(face_chip(image, face, size=size)[None])[0]
            right = LABELS[int(np.argmax(first))] == item.label
            upright = face_gender.detector.turned_upright(image, face)
            if upright is not None:
                again = face_gender.classifier.predict(face_chip(upright.pixels, upright.detection, size=size)[None])
                right_turned = LABELS[int(np.argmax(again[0]))] == item.label
            else:
                right_turned = right
            may_turn = face_gender.detector.may_turn_upright(face)
            readings[turned].append((float(first.max()), may_turn, right, right_turned))

    print(f"{len(items)} validation chips; right (share of the faces looked at four ways)\n")
    print_turns_header("unsure reading")
    for threshold in (*THRESHOLDS, None):
        cells = []
        for turned in range(4):
            looked = [unsure and (threshold is None or p < threshold) for p, unsure, _, _ in readings[turned]]
            right = sum(
                again if look else first for look, (_, _, first, again) in zip(looked, readings[turned], strict=True)
            )
            cells.append(f"{right} ({np.mean(looked):.3f})")
        print(f"| {'none' if threshold is None else f'{threshold:g}'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
