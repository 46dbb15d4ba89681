"""How FACEGENDER_TURN_FACES_UPRIGHT's margin and sure score decide, on UTKFace train chips turned four ways.

    python tools/upright_margin.py --data ../shared/data/utkface              # every 12th train chip
    python tools/upright_margin.py --data ../shared/data/utkface --every 4

Each chip is turned by 0, 90, 180 and 270 degrees; the detector finds its face and scores it after each quarter
turn (``BlazeFaceDetector.quarter_turn_scores``). For each margin, prints the share of the faces found that
``upright_turns`` turns back upright (for the chips not turned: leaves as they are), and how many faces were
found. Then, at the shipped margin, the same for each score at which a face found as it is counts as upright
without looking again (``SURE_UPRIGHT_SCORE``), with the share of the faces still looked at. The validation
and test splits and the portraits play no part.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facegender.data import load_dataset
from facegender.decode import load_image
from facegender.detect import SURE_UPRIGHT_SCORE, UPRIGHT_MARGIN, BlazeFaceDetector, upright_turns

MARGINS = (0.0, 0.05, UPRIGHT_MARGIN, 0.15, 0.2, 0.3)
SURE_SCORES = (0.8, 0.84, 0.85, SURE_UPRIGHT_SCORE, 0.88, 0.9)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the UTKFace folder")
    parser.add_argument("--every", type=int, default=12, help="use every N-th train chip")
    args = parser.parse_args(argv)

    detector = BlazeFaceDetector(threads=1)
    items = [item for item in load_dataset(args.data) if item.split == "train"][:: args.every]
    scores: dict[int, list[list[float]]] = {turned: [] for turned in range(4)}
    found_scores: dict[int, list[float]] = {turned: [] for turned in range(4)}
    for item in items:
        chip = load_image(item.path)
        for turned in range(4):
            image = np.ascontiguousarray(np.rot90(chip, turned))
            faces = detector.detect(image)
            if faces:
                scores[turned].append(detector.quarter_turn_scores(image, faces[0]))
                found_scores[turned].append(faces[0].score)

    print(f"{len(items)} train chips; share of the faces found that end upright\n")
    print_turns_header("margin")
    for margin in MARGINS:
        shares = [
            np.mean([upright_turns(looks, margin=margin) == (-turned) % 4 for looks in scores[turned]])
            for turned in range(4)
        ]
        print(f"| {margin:g} | " + " | ".join(f"{share:.4f}" for share in shares) + " |")
    print("| faces found | " + " | ".join(str(len(scores[turned])) for turned in range(4)) + " |")

    print(f"\nAt the margin {UPRIGHT_MARGIN:g}: share that end upright (share looked at again) by sure score\n")
    print_turns_header("sure score")
    for sure in (*SURE_SCORES, None):
        cells = []
        for turned in range(4):
            looked = np.array(found_scores[turned]) < (np.inf if sure is None else sure)
            ends = [
                upright_turns(looks) == (-turned) % 4 if look else turned == 0
                for looks, look in zip(scores[turned], looked, strict=True)
            ]
            cells.append(f"{np.mean(ends):.4f} ({np.mean(looked):.3f})")
        print(f"| {'none' if sure is None else f'{sure:g}'} | " + " | ".join(cells) + " |")


def print_turns_header(first_column: str) -> None:
    """The head of a Markdown table with ``first_column``, then one column for each quarter turn."""
    print(f"| {first_column} | " + " | ".join(f"turned {90 * turned} degrees" for turned in range(4)) + " |")
    print("| ---: |" + " ---: |" * 4)


if __name__ == "__main__":
    main()
