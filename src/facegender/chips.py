"""Make face chips for a whole dataset with the serving pipeline's own code, with a disk cache."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from facegender.align import CHIP_MARGIN, face_chip, head_turn, whole_image_chip
from facegender.decode import load_image
from facegender.detect import DEFAULT_DETECTOR_PATH, BlazeFaceDetector
from facegender.errors import FaceGenderError

__all__ = ["DEFAULT_CACHE_DIR", "ChipSet", "make_chips"]

DEFAULT_CACHE_DIR: Final = Path(".cache/chips")
"""Where the commands and tools keep their face chips unless told otherwise."""

_CACHE_FORMAT = "chips-v3"


@dataclass(frozen=True, slots=True)
class ChipSet:
    """``chips[i]`` is the largest face of ``paths[i]``; where ``found[i]`` is false the detector found
    no face (or the file was unreadable) and the chip is the centre of the whole image instead.
    ``head_turns[i]`` is that face's :func:`~facegender.align.head_turn` in degrees, NaN where none was found."""

    paths: tuple[Path, ...]
    chips: NDArray[np.uint8]
    found: NDArray[np.bool_]
    head_turns: NDArray[np.float32]


_Chipped = tuple[NDArray[np.uint8], bool, float]
"""A chip, whether a face was found, and that face's head turn (NaN where unknown)."""

_worker_detector: BlazeFaceDetector | None = None


def _chip_one(path: Path, size: int, quarter_turns: int) -> _Chipped:
    global _worker_detector
    if _worker_detector is None:
        _worker_detector = BlazeFaceDetector(threads=1)
    try:
        image = np.ascontiguousarray(np.rot90(load_image(path), quarter_turns))
    except FaceGenderError:
        return np.zeros((size, size, 3), np.uint8), False, math.nan
    detections = _worker_detector.detect(image)
    if not detections:
        return whole_image_chip(image, size=size), False, math.nan
    turn = head_turn(detections[0])
    return face_chip(image, detections[0], size=size), True, math.nan if turn is None else turn


def _chip_many(paths: Sequence[Path], size: int, quarter_turns: int) -> list[_Chipped]:
    return [_chip_one(path, size, quarter_turns) for path in paths]


def _cache_key(paths: Sequence[Path], size: int, quarter_turns: int) -> str:
    # Unturned chips keep the key they had before photos could be turned.
    turned = f"|turned {quarter_turns}" if quarter_turns else ""
    digest = hashlib.sha1(f"{_CACHE_FORMAT}|{size}|{CHIP_MARGIN}{turned}".encode())
    digest.update(DEFAULT_DETECTOR_PATH.read_bytes())
    for path in paths:
        stat = path.stat() if path.exists() else None
        digest.update(f"{path.resolve()}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}".encode())
    return digest.hexdigest()[:16]


def make_chips(
    paths: Sequence[Path],
    *,
    size: int,
    cache_dir: Path | None = None,
    workers: int | None = None,
    quarter_turns: int = 0,
    progress: Callable[[int], None] | None = None,
) -> ChipSet:
    """Detect and crop the largest face of every file; reuse ``cache_dir`` when nothing changed.

    ``quarter_turns`` turns each photo first (counter-clockwise, as :func:`numpy.rot90`), as photos that lost
    their orientation reach the service."""
    cache_file = cache_dir / f"{_cache_key(paths, size, quarter_turns)}.npz" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        cached = np.load(cache_file)
        if progress:
            progress(len(paths))
        return ChipSet(tuple(paths), cached["chips"], cached["found"], cached["head_turns"])
    workers = workers or min(os.cpu_count() or 1, 8)
    chunks = [list(paths[start : start + 256]) for start in range(0, len(paths), 256)]
    results: list[_Chipped] = []
    if workers == 1 or len(chunks) == 1:
        for chunk in chunks:
            results.extend(_chip_many(chunk, size, quarter_turns))
            if progress:
                progress(len(chunk))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for chunk, done in zip(
                chunks, pool.map(_chip_many, chunks, [size] * len(chunks), [quarter_turns] * len(chunks)), strict=True
            ):
                results.extend(done)
                if progress:
                    progress(len(chunk))
    chips = np.stack([chip for chip, _, _ in results]) if results else np.zeros((0, size, size, 3), np.uint8)
    found = np.array([ok for _, ok, _ in results], dtype=bool)
    head_turns = np.array([turn for _, _, turn in results], dtype=np.float32)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, chips=chips, found=found, head_turns=head_turns)
    return ChipSet(tuple(paths), chips, found, head_turns)
