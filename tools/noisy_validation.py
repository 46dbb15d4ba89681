"""Accuracy of gender models on the validation chips with Gaussian pixel noise added, as from a camera sensor.

    python tools/noisy_validation.py --data ../shared/data/utkface                     # the shipped model
    python tools/noisy_validation.py --data ../shared/data/utkface runs/*/gender-int8.onnx

The noise is added to the 128x128 chips themselves (each sigma from its own generator, seeded alike for every
model), so it is as strong as it gets: noise in a photo is partly averaged away when a big face is shrunk to
its chip. Prints a Markdown table: all ages, and adults in brackets. The test split plays no part.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facegender.chips import make_chips
from facegender.classify import DEFAULT_CLASSIFIER_PATH, GenderClassifier
from facegender.data import load_dataset

SIGMAS = (0, 5, 10, 25)
"""Grey levels of 255."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help=f"ONNX models (default {DEFAULT_CLASSIFIER_PATH.name})")
    parser.add_argument("--data", type=Path, required=True, help="the UTKFace folder")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/chips"), help="face chip cache")
    args = parser.parse_args(argv)

    classifiers = [GenderClassifier(model_path=path) for path in args.models or [DEFAULT_CLASSIFIER_PATH]]
    items = [item for item in load_dataset(args.data) if item.split == "val"]
    size = classifiers[0].input_size
    chip_set = make_chips([item.path for item in items], size=size, cache_dir=args.cache_dir)
    targets = np.array([item.target for item in items], dtype=np.int64)
    adult = np.array([item.is_adult is True for item in items])
    noisy = {
        sigma: (chip_set.chips + np.random.default_rng(sigma).normal(0.0, sigma, chip_set.chips.shape))
        .clip(0, 255)
        .astype(np.uint8)
        for sigma in SIGMAS
    }

    print(f"| model | {' | '.join(f'noise sigma {sigma}' for sigma in SIGMAS)} |")
    print(f"| --- |{' ---: |' * len(SIGMAS)}")
    for path, classifier in zip(args.models or [DEFAULT_CLASSIFIER_PATH], classifiers, strict=True):
        if classifier.input_size != size:
            raise SystemExit(f"{path} takes {classifier.input_size} px chips, not {size}")
        cells = []
        for sigma in SIGMAS:
            # A chip whose face the detector missed counts as wrong, as in facegender evaluate.
            correct = (classifier.predict(noisy[sigma]).argmax(axis=1) == targets) & chip_set.found
            cells.append(f"{correct.mean():.4f} ({correct[adult].mean():.4f})")
        print(f"| {path} ({classifier.version}) | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
