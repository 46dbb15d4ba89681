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

    @classmethod
    def clipped(cls, bounds: tuple[float, float, float, float], width: int, height: int) -> Box:
        """The part of ``bounds`` (left, top, right, bottom) inside a ``width`` x ``height`` image, rounded."""
        left, top = max(0.0, bounds[0]), max(0.0, bounds[1])
        right, bottom = min(float(width), bounds[2]), min(float(height), bounds[3])
        return cls(round(left), round(top), max(1, round(right - left)), max(1, round(bottom - top)))


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

    def rescaled(self, *, factor_x: float, factor_y: float, width: int, height: int) -> Detection:
        """The same face in the image scaled by ``factor_x`` and ``factor_y``, ``width`` x ``height`` pixels."""
        left, top, right, bottom = self.bounds
        bounds = (left * factor_x, top * factor_y, right * factor_x, bottom * factor_y)
        return Detection(
            box=Box.clipped(bounds, width, height),
            score=self.score,
            bounds=bounds,
            keypoints=tuple((x * factor_x, y * factor_y) for x, y in self.keypoints),
        )


@dataclass(frozen=True, slots=True)
class Face:
    """One classified face."""

    box: Box
    detection_score: float
    label: GenderLabel
    probability: float
    probabilities: dict[GenderLabel, float]
    model_version: str
    head_turn: float | None = None
    """Degrees the head is turned to one side, estimated from the detector's keypoints (0 faces the camera, 90
    is a profile; positive where the nose points to the image's right): :func:`facegender.align.head_turn`.
    ``None`` with ``detect=False``."""

    @property
    def label_index(self) -> int:
        return LABELS.index(self.label)
