"""Typed results of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["LABELS", "Box", "Detection", "Face", "GenderLabel", "Point"]

GenderLabel = Literal["female", "male"]
LABELS: Final[tuple[GenderLabel, GenderLabel]] = ("female", "male")
"""Class names in label order: female is 0 and male is 1, as in the original service."""

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Box:
    """A face's bounding box in pixels of the upright image."""

    left: int
    top: int
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height


@dataclass(frozen=True, slots=True)
class Detection:
    """A face found by the detector, before classification.

    ``keypoints`` are the detector's six landmarks in image pixels: the two eyes (image left first),
    nose tip, mouth centre and the two ear regions. ``bounds`` is the box as the detector saw it
    (left, top, right, bottom), which may reach past the image edge where ``box`` is clipped.
    """

    box: Box
    score: float
    bounds: tuple[float, float, float, float]
    keypoints: tuple[Point, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Face:
    """One classified face."""

    box: Box
    detection_score: float
    label: GenderLabel
    probability: float
    probabilities: dict[GenderLabel, float]
    model_version: str

    @property
    def label_index(self) -> int:
        return LABELS.index(self.label)
