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
from numpy.typing import NDArray
from validation_chips import validation_chips

from facegender.chips import DEFAULT_CACHE_DIR
from facegender.classify import DEFAULT_CLASSIFIER_PATH, GenderClassifier

SIGMAS = (0, 5, 10, 25)
"""Grey levels of 255."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help=f"ONNX models (default {DEFAULT_CLASSIFIER_PATH.name})")
    parser.add_argument("--data", type=Path, required=True, help="the UTKFace folder")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="face chip cache")
    args = parser.parse_args(argv)

    paths = args.models or [DEFAULT_CLASSIFIER_PATH]
    classifiers = [GenderClassifier(model_path=path) for path in paths]
    size = classifiers[0].input_size
    validation = validation_chips(args.data, size=size, cache_dir=args.cache_dir)
    for path, classifier in zip(paths, classifiers, strict=True):
        if classifier.input_size != size:
            raise SystemExit(f"{path} takes {classifier.input_size} px chips, not {size}")
    cells: list[list[str]] = [[] for _ in classifiers]
    for sigma in SIGMAS:  # one noisy copy of the chips at a time, shared by every model
        noisy = _with_noise(validation.chips, sigma)
        for row, classifier in zip(cells, classifiers, strict=True):
            correct = validation.correct(classifier.predict(noisy).argmax(axis=1) == 1)
            row.append(f"{correct.mean():.4f} ({correct[validation.adult].mean():.4f})")

    print(f"| model | {' | '.join(f'noise sigma {sigma}' for sigma in SIGMAS)} |")
    print(f"| --- |{' ---: |' * len(SIGMAS)}")
    for path, classifier, row in zip(paths, classifiers, cells, strict=True):
        print(f"| {path} ({classifier.version}) | {' | '.join(row)} |")


def _with_noise(chips: NDArray[np.uint8], sigma: int) -> NDArray[np.uint8]:
    """``chips`` with Gaussian noise of ``sigma`` grey levels, from a generator seeded by ``sigma``."""
    noise = np.random.default_rng(sigma).normal(0.0, sigma, chips.shape)
    return np.asarray((chips + noise).clip(0, 255), dtype=np.uint8)


if __name__ == "__main__":
    main()
