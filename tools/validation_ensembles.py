"""Seeds of one recipe on the validation split: each alone, averaged in ensembles, and the mistakes they share.

    python tools/validation_ensembles.py --data ../shared/data/utkface runs/seed*/gender.onnx

For each float model (``facegender train --seed N``), its accuracy on all validation chips and on the adults;
then the mean of the models' log-odds over every pair, every three and all of them (mean, lowest and highest
adult accuracy over the combinations); the correlation of the models' log-odds; and, for the shipped model,
how sure its adult mistakes were and how many of them every given model makes too. The test split plays no part.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from validation_chips import validation_chips

from facegender.chips import DEFAULT_CACHE_DIR
from facegender.classify import DEFAULT_CLASSIFIER_PATH, GenderClassifier


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="float models (gender.onnx) of the seeds")
    parser.add_argument("--data", type=Path, required=True, help="the UTKFace folder")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="face chip cache")
    args = parser.parse_args(argv)

    shipped = GenderClassifier(model_path=DEFAULT_CLASSIFIER_PATH)
    validation = validation_chips(args.data, size=shipped.input_size, cache_dir=args.cache_dir)
    adult = validation.adult

    def log_odds(classifier: GenderClassifier) -> NDArray[np.float64]:
        probabilities = classifier.predict(validation.chips).astype(np.float64)
        return np.log(probabilities[:, 1]) - np.log(probabilities[:, 0])

    seeds = {model: log_odds(GenderClassifier(model_path=model)) for model in args.models}
    print("| models | all ages | adults (mean) | adults (lowest) | adults (highest) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for count in sorted({size for size in (1, 2, 3, len(seeds)) if size <= len(seeds)}):
        scores = []
        for group in itertools.combinations(seeds.values(), count):
            correct = validation.correct(np.mean(group, axis=0) > 0)
            scores.append((correct.mean(), correct[adult].mean()))
        all_ages, adults = np.array(scores).T
        print(f"| {count} | {all_ages.mean():.4f} | {adults.mean():.4f} | {adults.min():.4f} | {adults.max():.4f} |")
    correlation = np.corrcoef(list(seeds.values()))
    print(f"\nlog-odds correlation between models: {correlation[np.triu_indices(len(seeds), 1)].mean():.3f} (mean)")

    shipped_odds = log_odds(shipped)
    wrong = ~validation.correct(shipped_odds > 0) & adult
    confidence = 1 / (1 + np.exp(-np.abs(shipped_odds)))  # the probability of the label it gave
    shared = np.all([~validation.correct(odds > 0) for odds in seeds.values()], axis=0) & wrong
    print(f"\nshipped model {shipped.version}: {wrong.sum()} mistakes on {adult.sum()} validation adults")
    for floor in (0.9, 0.97):
        print(f"- made at a probability of {floor} or more: {(wrong & (confidence >= floor)).sum()}")
    print(f"- made by every one of the {len(seeds)} models too: {shared.sum()}")


if __name__ == "__main__":
    main()
