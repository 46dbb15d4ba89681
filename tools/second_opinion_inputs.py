"""Which part of the chip dlib's network should see: each crop's probe, and its stack with the gender model.

    python tools/second_opinion_inputs.py --data ../shared/data/utkface \\
        --crops 102 106 112 120 128 --descriptors runs/descriptors.npz

For each centre crop of the 128 px chip (128: the whole chip), resized to 150 px and described by dlib's network
in float32 (``facegender.training.second_opinion.chip_descriptor_model``): the probe's accuracy on the train
split, each chip scored by a probe fitted on the other four fifths, and on the validation split, scored by a
probe fitted on the whole train split; then a stack of the gender model's log-odds and the probe's, fitted and
scored by 10-fold cross-validation on the validation split (20 shuffles, averaged): its accuracy, and its mistakes
on the adults. ``--descriptors`` adds a file of ``tools/face_descriptors.py`` (dlib's own alignment) as one more
row; ``--networks`` adds a row for each network that ``facegender tune-second-opinion`` tuned, on the crop the
second opinion uses (these saw the train split in training, so their train column is not held out). The test
split plays no part.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from teacher_probabilities import _descriptors, _male_log_odds, _probe_teacher, _targets

from facegender.chips import DEFAULT_CACHE_DIR, make_chips
from facegender.classify import CLASSIFIER_INPUT_NAME, FLOAT_CLASSIFIER_PATH, GenderClassifier
from facegender.data import load_dataset
from facegender.training.logistic import fit_logistic, logistic_log_odds
from facegender.training.second_opinion import (
    DLIB_NETWORK_FILE,
    chip_descriptor_model,
    dlib_models_folder,
    load_dlib_network,
)

Floats = NDArray[np.float64]
_FOLDS = 10
_SHUFFLES = 20


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the UTKFace folder")
    parser.add_argument("--crops", nargs="+", type=int, default=[102, 106, 112, 120, 128], help="crop sides, px")
    parser.add_argument("--descriptors", type=Path, help="descriptors on dlib's alignment (tools/face_descriptors.py)")
    parser.add_argument("--networks", nargs="*", type=Path, default=[], help="tuned networks (.npz) to add")
    parser.add_argument("--model", type=Path, default=FLOAT_CLASSIFIER_PATH, help="float gender model")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="face chip cache")
    args = parser.parse_args(argv)

    dataset = load_dataset(args.data)
    train = [item for item in dataset if item.split == "train"]
    validation = [item for item in dataset if item.split == "val"]
    gender = GenderClassifier(model_path=args.model, refine=False)
    chips = make_chips([item.path for item in train + validation], size=gender.input_size, cache_dir=args.cache_dir)
    gender_log_odds = _male_log_odds(gender, chips.chips[len(train) :])
    targets = _targets(validation)
    adults = np.array([item.is_adult is True for item in validation])
    print(f"gender model alone on validation: {np.mean((gender_log_odds > 0) == targets):.4f}, ", end="")
    print(f"{int(np.sum(((gender_log_odds > 0) != targets) & adults))} adult mistakes of {int(adults.sum())}")

    network = load_dlib_network(dlib_models_folder() / DLIB_NETWORK_FILE)
    inputs = [(f"crop {crop} px", network, crop) for crop in args.crops]
    inputs += [(f"tuned: {path.name}", load_dlib_network(path), None) for path in args.networks]
    rows: list[tuple[str, dict[str, NDArray[np.float32]]]] = []
    for name, described_by, crop in inputs:
        model = chip_descriptor_model(described_by, chip_size=gender.input_size, crop_side=crop)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        described = np.concatenate(
            [
                session.run(None, {CLASSIFIER_INPUT_NAME: chips.chips[start : start + 64]})[0]
                for start in range(0, len(chips.chips), 64)
            ]
        )
        rows.append((name, {item.path.name: row for item, row in zip(train + validation, described, strict=True)}))
    if args.descriptors is not None:
        rows.append((f"dlib's alignment ({args.descriptors.name})", _descriptors(args.descriptors)))

    print("| input | probe, train (5-fold) | probe, validation | stack, validation (CV) | stack, adult mistakes (CV) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, described_by_name in rows:
        held_out, probe = _probe_teacher(train, validation, described_by_name)
        train_accuracy = np.mean((held_out > 0) == _targets(train))
        stack_accuracy, stack_adult_mistakes = _stacked(np.stack([gender_log_odds, probe], axis=1), targets, adults)
        print(
            f"| {name} | {train_accuracy:.4f} | {np.mean((probe > 0) == targets):.4f} | {stack_accuracy:.4f} |"
            f" {stack_adult_mistakes:.1f} |"
        )


def _stacked(pair: Floats, targets: Floats, adults: NDArray[np.bool_]) -> tuple[float, float]:
    """Accuracy and adult mistakes of a stack of ``pair``, each chip scored by a stack fitted without its fold."""
    accuracy, adult_mistakes = [], []
    for shuffle in range(_SHUFFLES):
        folds = np.random.default_rng(shuffle).permutation(len(targets)) % _FOLDS
        log_odds = np.zeros(len(targets))
        for fold in range(_FOLDS):
            weights = fit_logistic(pair[folds != fold], targets[folds != fold], l2=0.0)
            log_odds[folds == fold] = logistic_log_odds(weights, pair[folds == fold])
        right = (log_odds > 0) == targets
        accuracy.append(right.mean())
        adult_mistakes.append(np.sum(~right & adults))
    return float(np.mean(accuracy)), float(np.mean(adult_mistakes))


if __name__ == "__main__":
    main()
