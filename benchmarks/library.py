"""The libraries side by side in this process: end to end per photo, batched chips, model load, accuracy."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from facegender import FaceGender
from facegender.data import LabeledImage
from facegender.decode import load_image

from .common import Row, percentile, share_found, share_right
from .peer import Peer

__all__ = ["LibraryResult", "run"]

CHIP_REPEATS = 3


@dataclass(frozen=True)
class LibraryResult:
    rows: list[Row]
    ours: FaceGender
    peer: Peer


def run(*, portraits: list[LabeledImage], chips: list[LabeledImage]) -> LibraryResult:
    """Load both, then time every portrait with each in turn (one photo at a time) and classify the chips."""
    started = time.perf_counter()
    ours = FaceGender()
    ours.predict(portraits[0].path)
    our_load = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    peer = Peer()
    peer.predict(portraits[0].path)
    peer_load = (time.perf_counter() - started) * 1000

    # Photo by photo in turn, so that whatever else the machine does weighs on both alike.
    our_ms, peer_ms = [], []
    our_labels: list[str | None] = []
    peer_labels: list[str | None] = []
    for item in portraits:
        started = time.perf_counter()
        faces = ours.predict(item.path)
        our_ms.append((time.perf_counter() - started) * 1000)
        our_labels.append(faces[0].label if faces else None)
        started = time.perf_counter()
        answer = peer.predict(item.path)
        peer_ms.append((time.perf_counter() - started) * 1000)
        peer_labels.append(answer.label)

    arrays = [load_image(item.path) for item in chips]
    size = ours.classifier.input_size
    resized = np.stack([np.asarray(Image.fromarray(a).resize((size, size))) for a in arrays])
    our_chip_s, peer_chip_s = [], []
    for _ in range(CHIP_REPEATS):
        started = time.perf_counter()
        ours.classifier.predict(resized)
        our_chip_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        for array in arrays:
            peer.gender(array)
        peer_chip_s.append(time.perf_counter() - started)
    our_chip_rate = len(chips) / statistics.median(our_chip_s)
    peer_chip_rate = len(chips) / statistics.median(peer_chip_s)

    truth = [item.label for item in portraits]
    rows = [
        Row("library end to end, photos/s", 1000 / statistics.mean(our_ms), 1000 / statistics.mean(peer_ms), True),
        Row("library end to end, p50 ms per photo", percentile(our_ms, 50), percentile(peer_ms, 50), False),
        Row("library end to end, p95 ms per photo", percentile(our_ms, 95), percentile(peer_ms, 95), False),
        Row(
            "accuracy on the same photos (no face = wrong)",
            share_right(our_labels, truth),
            share_right(peer_labels, truth),
            True,
        ),
        Row("faces found on the same photos", share_found(our_labels), share_found(peer_labels), True),
        Row("classifier on pre-cropped chips, faces/s (ours batched)", our_chip_rate, peer_chip_rate, True),
        Row("classifier, ms per face", 1000 / our_chip_rate, 1000 / peer_chip_rate, False),
        Row("model load and first call, ms", our_load, peer_load, False),
    ]
    return LibraryResult(rows=rows, ours=ours, peer=peer)
