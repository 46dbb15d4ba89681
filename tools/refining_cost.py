"""What the shipped model's refining step costs: how often it runs, its time per chip and its memory.

    python tools/refining_cost.py --data ../shared/data/utkface --portraits ../shared/data/portraits \\
        src/facegender/models/gender.onnx src/facegender/models/gender-second-opinion.onnx

For the shipped int8 model: the share of validation chips, and of the faces in the portraits, that it sends
to its refining model. For each model named: the milliseconds per chip, one chip at a time on one thread (the
median of 200 validation chips, after 10 to warm up), and how much the process's resident memory grew when its
session was made and first run (each in a fresh process), the session as the refining step makes it (compact).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from validation_chips import validation_chips

from facegender import FaceGender
from facegender.chips import DEFAULT_CACHE_DIR
from facegender.classify import DEFAULT_CLASSIFIER_PATH, GenderClassifier

_PAGE = 4096


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="refining models to time")
    parser.add_argument("--data", type=Path, required=True, help="the UTKFace folder")
    parser.add_argument("--portraits", type=Path, required=True, help="the portraits folder")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="face chip cache")
    parser.add_argument("--memory-of", type=Path, help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args(argv)
    shipped = GenderClassifier(model_path=DEFAULT_CLASSIFIER_PATH, refine=False)
    chips = validation_chips(args.data, size=shipped.input_size, cache_dir=args.cache_dir).chips
    if args.memory_of is not None:
        before = _resident_bytes()
        GenderClassifier(model_path=args.memory_of, threads=1, compact=True).predict(chips[:1])
        print(_resident_bytes() - before)
        return

    refining = GenderClassifier(model_path=DEFAULT_CLASSIFIER_PATH)
    print(f"validation chips refined: {refining.unsure(shipped.predict(chips)).mean():.1%} of {len(chips)}")
    pipeline = FaceGender()
    refiner = pipeline.classifier.refiner
    assert refiner is not None, "the shipped model names no refining model"
    refined, faces = 0, 0
    predict = refiner.predict

    def counting(batch: np.ndarray) -> np.ndarray:
        nonlocal refined
        refined += len(batch)
        return predict(batch)

    refiner.predict = counting  # type: ignore[method-assign]
    for photo in sorted(args.portraits.rglob("*.jpg")):
        faces += len(pipeline.predict(photo))
    print(f"portrait faces refined: {refined} of {faces}")

    print("| model | ms per chip, one at a time | resident memory of its session, MiB |")
    print("| --- | ---: | ---: |")
    for path in args.models:
        model = GenderClassifier(model_path=path, threads=1, compact=True)
        for chip in chips[:10]:
            model.predict(chip[None])
        times = []
        for chip in chips[10:210]:
            start = time.perf_counter()
            model.predict(chip[None])
            times.append(time.perf_counter() - start)
        command = [sys.executable, __file__, "--data", str(args.data), "--cache-dir", str(args.cache_dir)]
        grown = subprocess.run(
            [*command, "--portraits", str(args.portraits), "--memory-of", str(path), str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        print(f"| {path.name} | {1000 * float(np.median(times)):.2f} | {int(grown) / 2**20:.1f} |")


def _resident_bytes() -> int:
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * _PAGE


if __name__ == "__main__":
    main()
