"""Soft targets for distillation: each training chip's probability of male by the mean log-odds of teacher models.

    python tools/teacher_probabilities.py --data ../shared/data/utkface --out runs/teacher.npz runs/seed*/gender.onnx
    facegender train --data ../shared/data/utkface --out runs/student --teacher runs/teacher.npz --teacher-weight 0.5

Each teacher classifies the train split's chips (made as for training, unaugmented; each graph averages the chip
with its mirror image and applies its temperature). Writes an ``.npz`` with ``names`` (file names) and ``male``
(float32), the file ``facegender train --teacher`` reads. The test split plays no part.

``--descriptors FILE`` (from ``tools/face_descriptors.py``, train and val splits) adds a teacher of another kind:
a logistic regression of gender on dlib's face descriptors. Each training chip gets the log-odds of a regression
fitted without it (five folds), so that this teacher's doubt about a label is not hidden by having learnt it; its
log-odds, times ``--descriptor-weight``, are added to the models' mean. The sum is then divided by the
temperature that fits it best on the validation split (where the regression is fitted on the whole train split
and the models classify the validation chips the same way), so that the soft targets are as sure as they
deserve, not as sure as a sum of two teachers.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from facegender.chips import DEFAULT_CACHE_DIR, make_chips
from facegender.classify import GenderClassifier
from facegender.data import LabeledImage, load_dataset
from facegender.training.logistic import fit_logistic, logistic_log_odds
from facegender.training.train import fit_temperature

Floats = NDArray[np.float64]
_FOLDS = 5


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="float ONNX gender models, the teachers")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder or labels CSV")
    parser.add_argument("--out", type=Path, required=True, help=".npz file to write")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="face chip cache")
    parser.add_argument("--descriptors", type=Path, help="dlib face descriptors (tools/face_descriptors.py)")
    parser.add_argument("--descriptor-weight", type=float, default=0.3, help="weight of the descriptors' log-odds")
    args = parser.parse_args(argv)

    teachers = [GenderClassifier(model_path=path, refine=False) for path in args.models]
    sizes = {teacher.input_size for teacher in teachers}
    if len(sizes) != 1:
        raise SystemExit(f"the teachers take chips of different sizes: {sorted(sizes)}")
    dataset = load_dataset(args.data)
    train = [item for item in dataset if item.split == "train"]
    validation = [item for item in dataset if item.split == "val"] if args.descriptors is not None else []
    # One pass of each teacher over the chips of both splits.
    chips = make_chips([item.path for item in train + validation], size=sizes.pop(), cache_dir=args.cache_dir).chips
    per_teacher = []
    for path, teacher in zip(args.models, teachers, strict=True):
        per_teacher.append(_male_log_odds(teacher, chips))
        print(f"{path}: done", flush=True)
    models = np.mean(per_teacher, axis=0)
    log_odds, validation_models = models[: len(train)], models[len(train) :]
    if args.descriptors is not None:
        held_out, validation_probe = _probe_teacher(train, validation, _descriptors(args.descriptors))
        train_y, validation_y = (_targets(items) for items in (train, validation))
        validation_sum = validation_models + args.descriptor_weight * validation_probe
        # The female logit is 0, so the male logit is the log-odds.
        logits = np.stack([np.zeros_like(validation_sum), validation_sum], axis=1).astype(np.float32)
        temperature = fit_temperature(logits, validation_y.astype(np.int64))
        adults = np.array([item.is_adult is True for item in validation])

        def scores(log_odds: Floats) -> str:
            right = (log_odds > 0) == validation_y
            return f"{right.mean():.4f} (adults {right[adults].mean():.4f})"

        print(
            f"descriptor probe: held-out accuracy {np.mean((held_out > 0) == train_y):.4f} on train; on val: "
            f"probe {scores(validation_probe)}, models {scores(validation_models)}, "
            f"models + {args.descriptor_weight} x probe {scores(validation_sum)}; "
            f"log-odds correlation {np.corrcoef(validation_models, validation_probe)[0, 1]:.3f}; "
            f"temperature {temperature:.3f}",
            flush=True,
        )
        log_odds = (log_odds + args.descriptor_weight * held_out) / temperature
    male = 1 / (1 + np.exp(-log_odds))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, names=np.array([item.path.name for item in train]), male=male.astype(np.float32))
    agreement = np.mean((male > 0.5) == _targets(train))
    print(
        f"wrote {args.out}: {len(train)} training chips, {len(args.models)} teachers, "
        f"agreeing with the train labels on {agreement:.1%} of them"
    )


def _male_log_odds(model: GenderClassifier, chips: NDArray[np.uint8]) -> Floats:
    """The log-odds of male by ``model``'s calibrated probabilities (kept off 0 and 1, as float32 stores some)."""
    male = np.clip(model.predict(chips)[:, 1].astype(np.float64), 1e-6, 1 - 1e-6)
    return np.asarray(np.log(male / (1 - male)))


def _descriptors(path: Path) -> dict[str, NDArray[np.float32]]:
    with np.load(path) as stored:
        return dict(zip(stored["names"].tolist(), stored["descriptors"], strict=True))


def _probe_teacher(
    train: list[LabeledImage], validation: list[LabeledImage], described: dict[str, NDArray[np.float32]]
) -> tuple[Floats, Floats]:
    """The probe's log-odds for each training chip, from a probe fitted on the other folds, and for each validation
    chip, from a probe fitted on the whole train split."""
    train_x, validation_x = (
        np.stack([described[item.path.name] for item in items]).astype(np.float64) for items in (train, validation)
    )
    train_y = _targets(train)
    folds = np.arange(len(train)) % _FOLDS
    held_out = np.zeros(len(train))
    for fold in range(_FOLDS):
        weights = fit_logistic(train_x[folds != fold], train_y[folds != fold])
        held_out[folds == fold] = logistic_log_odds(weights, train_x[folds == fold])
    return held_out, logistic_log_odds(fit_logistic(train_x, train_y), validation_x)


def _targets(items: list[LabeledImage]) -> Floats:
    return np.array([item.target for item in items], dtype=np.float64)


if __name__ == "__main__":
    main()
