"""Soft targets for distillation: each training chip's probability of male by the mean log-odds of teacher models.

    python tools/teacher_probabilities.py --data ../shared/data/utkface --out runs/teacher.npz runs/seed*/gender.onnx
    facegender train --data ../shared/data/utkface --out runs/student --teacher runs/teacher.npz --teacher-weight 0.5

Each teacher classifies the train split's chips (made as for training, unaugmented; each graph averages the chip
with its mirror image and applies its temperature). Writes an ``.npz`` with ``names`` (file names) and ``male``
(float32), the file ``facegender train --teacher`` reads. The validation and test splits play no part.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facegender.chips import make_chips
from facegender.classify import GenderClassifier
from facegender.data import load_dataset


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="float ONNX gender models, the teachers")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder or labels CSV")
    parser.add_argument("--out", type=Path, required=True, help=".npz file to write")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/chips"), help="face chip cache")
    args = parser.parse_args(argv)

    teachers = [GenderClassifier(model_path=path, refine=False) for path in args.models]
    sizes = {teacher.input_size for teacher in teachers}
    if len(sizes) != 1:
        raise SystemExit(f"the teachers take chips of different sizes: {sorted(sizes)}")
    items = [item for item in load_dataset(args.data) if item.split == "train"]
    chips = make_chips([item.path for item in items], size=sizes.pop(), cache_dir=args.cache_dir).chips
    log_odds = []
    for path, teacher in zip(args.models, teachers, strict=True):
        male = np.clip(teacher.predict(chips)[:, 1].astype(np.float64), 1e-6, 1 - 1e-6)
        log_odds.append(np.log(male / (1 - male)))
        print(f"{path}: done", flush=True)
    male = 1 / (1 + np.exp(-np.mean(log_odds, axis=0)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, names=np.array([item.path.name for item in items]), male=male.astype(np.float32))
    print(f"wrote {args.out}: {len(items)} training chips, {len(args.models)} teachers")


if __name__ == "__main__":
    main()
