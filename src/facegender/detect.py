"""Face detection with MediaPipe's BlazeFace short-range model, run on onnxruntime."""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from facegender._onnx import create_session
from facegender.decode import RGBImage
from facegender.results import Box, Detection

__all__ = ["DEFAULT_DETECTOR_PATH", "BlazeFaceDetector"]

DEFAULT_DETECTOR_PATH: Final = Path(str(resources.files("facegender") / "models" / "blazeface_short_range.onnx"))

FloatArray = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class _View:
    """A square window of the image that was scaled to the network input: image = input * scale + offset."""

    scale: float
    offset_x: float
    offset_y: float
    is_tile: bool = False


def _anchors() -> FloatArray:
    """BlazeFace short-range anchor centres: 2 per cell on a 16x16 grid, then 6 per cell on 8x8."""
    centres: list[tuple[float, float]] = []
    for grid, per_cell in ((16, 2), (8, 6)):
        for row in range(grid):
            for col in range(grid):
                centres.extend([((col + 0.5) / grid, (row + 0.5) / grid)] * per_cell)
    return np.asarray(centres, dtype=np.float32)


class BlazeFaceDetector:
    """Finds faces and six landmarks each.

    The network sees a 128x128 letterboxed view. Faces that fill the frame (already-cropped chips) are
    found by a second view with a wide border; large photos are also searched in overlapping tiles, so
    that faces down to about an eighth of the short side are found. ``min_face_size`` (pixels) adds
    finer levels of tiles, at a cost that grows with the square of the photo's size over that face size.
    """

    input_size: Final = 128
    # Tiles cover each quadrant with overlap, for faces too small in the whole-image view.
    _tile_fraction: Final = 0.6
    _min_side_for_tiles: Final = 400
    # The smallest face found reliably in a view, as a fraction of the view's side (measured on portraits).
    _findable_fraction: Final = 0.2
    # Tiles see faces cut by their edges and textures out of context: they must be surer.
    _tile_threshold: Final = 0.8

    def __init__(
        self,
        *,
        model_path: Path = DEFAULT_DETECTOR_PATH,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.3,
        threads: int = 0,
        min_face_size: int | None = None,
    ) -> None:
        self._session = create_session(model_path, threads=threads)
        self._anchors = _anchors()
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.min_face_size = min_face_size

    def detect(self, image: RGBImage) -> list[Detection]:
        """All faces in ``image``, largest first."""
        height, width = image.shape[:2]
        views = [self._whole_view(width, height)]
        side = min(width, height) * self._tile_fraction
        if min(width, height) >= self._min_side_for_tiles:
            views.extend(self._tile_views(width, height, side))
            # Each finer level halves the tile side: twice the resolution, four times the tiles.
            finer = self.min_face_size or math.inf
            while side * self._findable_fraction > finer and side >= 2 * self.input_size:
                side /= 2
                views.extend(self._tile_views(width, height, side))
        detections = self._run(image, views)
        if not detections:
            detections = self._run(image, [self._padded_view(width, height)])
        return sorted(detections, key=lambda d: d.box.area, reverse=True)

    def _whole_view(self, width: int, height: int) -> _View:
        side = max(width, height)
        return _View(side / self.input_size, (width - side) / 2, (height - side) / 2)

    def _padded_view(self, width: int, height: int) -> _View:
        side = max(width, height) * 1.6
        return _View(side / self.input_size, (width - side) / 2, (height - side) / 2)

    def _tile_views(self, width: int, height: int, side: float) -> list[_View]:
        xs = np.linspace(0, width - side, num=max(2, round(width / side) + 1))
        ys = np.linspace(0, height - side, num=max(2, round(height / side) + 1))
        return [_View(side / self.input_size, float(x), float(y), is_tile=True) for y in ys for x in xs]

    def _crop(self, image: RGBImage, view: _View) -> FloatArray:
        to_input = np.array(
            [[1 / view.scale, 0, -view.offset_x / view.scale], [0, 1 / view.scale, -view.offset_y / view.scale]],
            dtype=np.float64,
        )
        # INTER_AREA-like quality matters when shrinking big photos; the mean border keeps padding neutral.
        source: RGBImage = image
        shrink = view.scale
        if shrink > 2:
            factor = int(shrink // 2)
            size = (image.shape[1] // factor, image.shape[0] // factor)
            source = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
            to_input[:, :2] *= factor
        patch = cv2.warpAffine(
            source,
            to_input,
            (self.input_size, self.input_size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        return patch.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0

    def _run(self, image: RGBImage, views: list[_View]) -> list[Detection]:
        batch = np.stack([self._crop(image, view) for view in views])
        regressors, classificators = self._session.run(None, {"input": batch})
        scores = 1.0 / (1.0 + np.exp(-np.clip(classificators[..., 0], -80, 80)))
        candidates: list[tuple[float, FloatArray]] = []
        for index, view in enumerate(views):
            threshold = max(self.score_threshold, self._tile_threshold) if view.is_tile else self.score_threshold
            keep = np.flatnonzero(scores[index] >= threshold)
            for anchor_index in keep:
                raw = regressors[index, anchor_index] / self.input_size
                anchor = self._anchors[anchor_index]
                points = raw[4:].reshape(6, 2) + anchor
                cx, cy = raw[0] + anchor[0], raw[1] + anchor[1]
                corners = np.array([cx - raw[2] / 2, cy - raw[3] / 2, cx + raw[2] / 2, cy + raw[3] / 2])
                geometry = np.concatenate([corners, points.ravel()]) * self.input_size * view.scale
                geometry[0::2] += view.offset_x
                geometry[1::2] += view.offset_y
                candidates.append((float(scores[index, anchor_index]), geometry.astype(np.float32)))
        height, width = image.shape[:2]
        return [self._to_detection(score, geometry, width, height) for score, geometry in self._merge(candidates)]

    def _merge(self, candidates: list[tuple[float, FloatArray]]) -> list[tuple[float, FloatArray]]:
        """Weighted non-maximum suppression: overlapping candidates are averaged by score."""
        remaining = sorted(candidates, key=lambda c: c[0], reverse=True)
        merged: list[tuple[float, FloatArray]] = []
        while remaining:
            best_score, best = remaining[0]
            overlaps = np.array([_iou(best[:4], other[:4]) for _, other in remaining])
            group = [remaining[i] for i in np.flatnonzero(overlaps >= self.iou_threshold)]
            weights = np.array([score for score, _ in group], dtype=np.float32)
            geometry = (np.stack([g for _, g in group]) * weights[:, None]).sum(axis=0) / weights.sum()
            merged.append((best_score, geometry))
            remaining = [remaining[i] for i in np.flatnonzero(overlaps < self.iou_threshold)]
        return merged

    @staticmethod
    def _to_detection(score: float, geometry: FloatArray, width: int, height: int) -> Detection:
        x1, y1 = max(0.0, float(geometry[0])), max(0.0, float(geometry[1]))
        x2, y2 = min(float(width), float(geometry[2])), min(float(height), float(geometry[3]))
        box = Box(round(x1), round(y1), max(1, round(x2 - x1)), max(1, round(y2 - y1)))
        points = tuple((float(x), float(y)) for x, y in geometry[4:].reshape(6, 2))
        bounds = (float(geometry[0]), float(geometry[1]), float(geometry[2]), float(geometry[3]))
        return Detection(box=box, score=score, bounds=bounds, keypoints=points)


def _iou(a: FloatArray, b: FloatArray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
