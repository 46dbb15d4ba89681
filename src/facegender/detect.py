"""Face detection with MediaPipe's BlazeFace short-range model, run on onnxruntime."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from facegender._onnx import create_session
from facegender.align import WARP_SIDE_LIMIT, along_and_across_the_eyes, head_turn
from facegender.decode import RGBImage
from facegender.results import Box, Detection

__all__ = [
    "DEFAULT_DETECTOR_PATH",
    "SURE_UPRIGHT_SCORE",
    "UPRIGHT_MARGIN",
    "BlazeFaceDetector",
    "TurnedFace",
    "upright_turns",
]

DEFAULT_DETECTOR_PATH: Final = Path(str(resources.files("facegender") / "models" / "blazeface_short_range.onnx"))

FloatArray = NDArray[np.float32]

# The network's two heads: 2 anchors per cell at stride 8, then 6 per cell at stride 16. It is fully
# convolutional, so any input whose sides are multiples of the largest stride works.
_HEADS: Final = ((8, 2), (16, 6))
_STRIDE: Final = max(stride for stride, _ in _HEADS)

UPRIGHT_MARGIN: Final = 0.1
"""How much surer of a face a quarter turn must make the detector before :meth:`BlazeFaceDetector.turned_upright`
turns it. On every 12th UTKFace train chip (1,427), turned each of the four ways, 0.1 turned 1 of the 1,425
upright ones found and turned back 96%, 99.4% and 93% of those turned by 90, 180 and 270 degrees; 0.05 turned 3
upright ones, for 1 to 5 points more (``python tools/upright_margin.py --data ../shared/data/utkface``)."""

SURE_UPRIGHT_SCORE: Final = 0.86
"""A face found at least this surely as it is counts as upright: :meth:`BlazeFaceDetector.turned_upright` spares
it the four looks. The detector is less sure of faces on their side or upside down: of the same chips, none
turned by 90, 180 or 270 degrees was found at 0.86 or more, and 27% of the upright ones were, so no decision
changes there; at 0.85 one turned by 90 degrees would stay turned (``python tools/upright_margin.py``)."""


def upright_turns(scores: Sequence[float], *, margin: float = UPRIGHT_MARGIN) -> int:
    """The quarter turns that make a face upright, from the detector's scores for it after 0, 1, 2 and 3 turns
    (:meth:`BlazeFaceDetector.quarter_turn_scores`): 0 unless a turn makes it surer by more than ``margin``."""
    turns = max(range(1, 4), key=scores.__getitem__)
    return turns if scores[turns] - scores[0] > margin else 0


@dataclass(frozen=True, slots=True)
class TurnedFace:
    """A face's surroundings turned by ``quarter_turns`` (counter-clockwise, as :func:`numpy.rot90`), and the
    face as the detector finds it in them: box and landmarks in ``pixels``."""

    quarter_turns: int
    pixels: RGBImage
    detection: Detection


@dataclass(frozen=True, slots=True)
class _Pass:
    """The image as one network input of ``width`` x ``height``: input = image * scale + shift."""

    scale: float
    shift_x: float
    shift_y: float
    width: int
    height: int
    threshold: float


@lru_cache(maxsize=64)
def _anchor_centres(width: int, height: int) -> FloatArray:
    """Anchor centres in input pixels, in the network's output order (row, column, anchor)."""
    centres = []
    for stride, per_cell in _HEADS:
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid((np.arange(rows) + 0.5) * stride, (np.arange(cols) + 0.5) * stride, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


class BlazeFaceDetector:
    """Finds faces and six landmarks each.

    The network sees the whole image with its long side at 128 pixels (as wide or high as the image needs,
    in whole strides), which finds faces from about a fifth of the long side up to the whole frame. Faces
    that fill the frame (already-cropped chips) are found by a second view with a wide border when the first
    finds nothing. Photos with a short side of 400 pixels or more are also searched at a finer scale, the
    whole image in one pass, so that faces down to about an eighth of the short side are found.
    ``min_face_size`` (pixels) adds finer scales, at a cost that grows with the square of the photo's size
    over that face size.
    """

    input_size: Final = 128
    # The finer scale shows a window of this fraction of the short side as 128 pixels: about 0.6, chosen so that
    # the short side of its input is 208 pixels, a multiple of the stride (0.6 gave 213, padded to 224).
    _fine_fraction: Final = 128 / 208
    _min_side_for_fine: Final = 400
    # The smallest face found reliably in a view, as a fraction of the view's side (measured on portraits).
    _findable_fraction: Final = 0.2
    # Finer scales see small textures out of context, where false faces appear: they must be surer. (The
    # tiles this pass replaced needed 0.8, but saw each face two to four times, at different offsets.)
    _fine_threshold: Final = 0.7
    # Faces do not nest: of two boxes where one lies mostly inside the other, one is a part of a face (an
    # eye and a cheek) or a cluster of faces seen as one (a grid of photos at 128 px). The surer one stays.
    _containment: Final = 0.5
    # A head turned far to one side shows its ear beside the face, and the network can take the ear for a small
    # face of its own (4 of the 187 portraits, all turned 50 to 70 degrees: ears at 0.30 to 0.49 of the face's
    # side and scores of 0.52 to 0.56, while every real face of the collages was at least 0.6 of a neighbour's
    # side). See _is_ear.
    _ear_turn: Final = 45.0
    _ear_size: Final = 0.5
    # turned_upright looks at a face with this much of its surroundings (times the box side), shown in one
    # input with a border (as the view for faces that fill the frame): the face is about 40% of the input.
    _upright_context: Final = 1.6
    _upright_border: Final = 1.6

    def __init__(
        self,
        *,
        model_path: Path = DEFAULT_DETECTOR_PATH,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.3,
        threads: int = 0,
        min_face_size: int | None = None,
        side_by_side_while: Callable[[], bool] | None = None,
    ) -> None:
        # Its inputs are at most a few hundred pixels a side: too small to share one among threads (one
        # thread measured 8% faster per photo than two). With 0 ("choose"), the passes over one photo run
        # side by side instead, one thread each: 5.8 -> 4.1 ms per portrait on two cores. Only while the
        # side thread is free: when several photos are detected at once (a server), each caller runs its
        # passes in turn rather than queue behind the others' (one shared side thread cut a 1-worker
        # server's requests/s at 16 clients from 67 to 53). And only while ``side_by_side_while()`` (when
        # given) says the other cores are free: a server whose requests wait serves more of them with each
        # photo's passes in turn (docs/performance.md, "Sharing between workers").
        self._side_by_side_while = side_by_side_while
        self._session = create_session(model_path, threads=threads or 1)
        self._side_thread = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="facegender-detect") if threads == 0 else None
        )
        self._side_thread_free = threading.Lock()
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.min_face_size = min_face_size

    def detect(
        self,
        image: RGBImage,
        *,
        downscale: float = 1.0,
        on_first_look: Callable[[list[Detection]], None] | None = None,
    ) -> list[Detection]:
        """All faces in ``image``, largest first.

        ``downscale`` is how many pixels of the original photo each pixel of ``image`` stands for (a JPEG
        decoded at reduced scale), so that ``min_face_size`` keeps meaning pixels of the original.

        While the finer passes run beside this thread, ``on_first_look`` is called in it with the faces of
        the whole-image pass alone, so that the caller can start on them: a face that the finer passes do
        not change comes back from this method equal to the one given there.
        """
        height, width = image.shape[:2]
        pyramid = _Pyramid(image)
        views = [self._whole(width, height)]
        views += [self._fine(width, height, side) for side in self._fine_sides(width, height, downscale=downscale)]
        first_look = None if on_first_look is None else lambda first: on_first_look(self._faces(first, width, height))
        candidates = self._run_all(pyramid, views, first_look=first_look)
        if not candidates:
            candidates = self._run_all(pyramid, [self._letterbox(width, height, margin=1.6)])
        return self._faces(candidates, width, height)

    def _faces(self, candidates: list[tuple[float, FloatArray]], width: int, height: int) -> list[Detection]:
        """The candidates merged into faces, largest first."""
        merged = _drop_contained(self._merge(candidates), self._containment)
        detections = [self._to_detection(score, geometry, width, height) for score, geometry in merged]
        faces = [d for d in detections if not any(self._is_ear(d, of=other) for other in detections)]
        return sorted(faces, key=lambda d: d.box.area, reverse=True)

    def _is_ear(self, candidate: Detection, *, of: Detection) -> bool:
        """Whether ``candidate`` is the visible ear of the head of ``of``: found with less confidence than the
        finer passes ask of small faces, at most ``_ear_size`` of the side of a face turned ``_ear_turn``
        degrees or more, and beside it on the side away from its nose (within one side along the line of its
        eyes, half a side across it)."""
        side = of.bounds[2] - of.bounds[0]
        if (
            candidate is of
            or candidate.score >= self._fine_threshold
            or candidate.bounds[2] - candidate.bounds[0] > self._ear_size * side
        ):
            return False
        turn = head_turn(of)
        if turn is None or abs(turn) < self._ear_turn:
            return False
        along, across = along_and_across_the_eyes(
            of,
            dx=(candidate.bounds[0] + candidate.bounds[2] - of.bounds[0] - of.bounds[2]) / 2,
            dy=(candidate.bounds[1] + candidate.bounds[3] - of.bounds[1] - of.bounds[3]) / 2,
        )
        return along * turn < 0 and abs(along) <= side and abs(across) <= side / 2

    def turned_upright(self, image: RGBImage, face: Detection) -> TurnedFace | None:
        """``face``'s surroundings turned upright, when the detector is clearly surer of the face after a quarter
        turn than as it is (a photo that lost its orientation); ``None`` when it is not.

        On a face turned on its side or upside down the detector still finds the face, but places its
        landmarks as on an upright one, so the chip would not be turned back: this looks again, four ways, at a
        face that :meth:`may_turn_upright`."""
        if not self.may_turn_upright(face):
            return None
        region, looks = self._four_looks(image, face)
        turns = upright_turns([_score(found) for found, _ in looks])
        found, seen = looks[turns]
        if not turns or found is None:
            return None
        pixels = np.ascontiguousarray(np.rot90(region, turns))
        height, width = pixels.shape[:2]
        detection = found.rescaled(
            factor_x=width / seen.shape[1], factor_y=height / seen.shape[0], width=width, height=height
        )
        return TurnedFace(quarter_turns=turns, pixels=pixels, detection=detection)

    @staticmethod
    def may_turn_upright(face: Detection) -> bool:
        """Whether :meth:`turned_upright` looks at ``face`` at all: not when found at least
        :data:`SURE_UPRIGHT_SCORE` as it is."""
        return face.score < SURE_UPRIGHT_SCORE

    def quarter_turn_scores(self, image: RGBImage, face: Detection) -> list[float]:
        """The detector's score for ``face`` in its surroundings after 0, 1, 2 and 3 quarter turns (0 where it
        finds none): what :meth:`turned_upright` decides by."""
        return [_score(found) for found, _ in self._four_looks(image, face)[1]]

    def _four_looks(self, image: RGBImage, face: Detection) -> tuple[RGBImage, list[tuple[Detection | None, RGBImage]]]:
        """``face``'s surroundings, and after each of 0 to 3 quarter turns the surest face in them with the
        (shrunk, turned) copy it was found in."""
        region = _surroundings(image, face.bounds, self._upright_context)
        # The four looks need no more pixels than their input shows: shrink once, then turn the small copy.
        shrink = max(1.0, max(region.shape[:2]) * self._upright_border / (2 * self.input_size))
        small = region if shrink == 1.0 else _shrunk(region, shrink)
        turned = [np.ascontiguousarray(np.rot90(small, turns)) for turns in range(4)]
        return region, [(self._surest_face(view), view) for view in turned]

    def _surest_face(self, image: RGBImage) -> Detection | None:
        height, width = image.shape[:2]
        view = self._letterbox(width, height, margin=self._upright_border)
        faces = self._faces(self._run(self._input(_Pyramid(image), view), view), width, height)
        return max(faces, key=lambda found: found.score, default=None)

    def smallest_face(self, width: int, height: int, *, downscale: float = 1.0) -> float:
        """The side, in pixels, of the smallest face searched for in a ``width`` x ``height`` image
        (``downscale`` as for :meth:`detect`)."""
        return self._finest_side(width, height, downscale=downscale) * self._findable_fraction

    def finest_scale(self, width: int, height: int) -> float:
        """Input pixels per image pixel in the finest pass over a full-size ``width`` x ``height`` image."""
        return self.input_size / self._finest_side(width, height, downscale=1.0)

    def _finest_side(self, width: int, height: int, *, downscale: float) -> float:
        """The side of the image window that the finest pass shows as 128 pixels."""
        return min([float(max(width, height)), *self._fine_sides(width, height, downscale=downscale)])

    def _fine_sides(self, width: int, height: int, *, downscale: float) -> list[float]:
        """The window sides of the finer scales: each next one halves the side, for twice the resolution."""
        if min(width, height) * downscale < self._min_side_for_fine:
            return []
        side = min(width, height) * self._fine_fraction
        sides = [side]
        finer = self.min_face_size / downscale if self.min_face_size else math.inf
        while side * self._findable_fraction > finer and side >= 2 * self.input_size:
            side /= 2
            sides.append(side)
        # A pass over a panorama more than about 150 times as long as it is high would be too long for cv2's
        # warp: such passes are left out, and the smaller faces only they would find with them.
        longest = max(width, height) * self.input_size
        return [side for side in sides if _in_strides(longest / side) <= WARP_SIDE_LIMIT]

    def _whole(self, width: int, height: int) -> _Pass:
        """The whole image with its long side at 128 pixels, in an input as narrow as the image in whole strides
        (128x96 for a 2:3 portrait: a square's borders would be work for nothing)."""
        scale = self.input_size / max(width, height)
        return self._centred(width, height, scale, _in_strides(width * scale), _in_strides(height * scale))

    def _letterbox(self, width: int, height: int, *, margin: float) -> _Pass:
        """The whole image, centred in one square input with a border of ``margin`` times the long side (context
        for faces that fill the frame)."""
        scale = self.input_size / (max(width, height) * margin)
        return self._centred(width, height, scale, self.input_size, self.input_size)

    def _centred(self, width: int, height: int, scale: float, input_width: int, input_height: int) -> _Pass:
        """The image at ``scale``, centred in an ``input_width`` x ``input_height`` input."""
        return _Pass(
            scale=scale,
            shift_x=(input_width - width * scale) / 2,
            shift_y=(input_height - height * scale) / 2,
            width=input_width,
            height=input_height,
            threshold=self.score_threshold,
        )

    def _fine(self, width: int, height: int, side: float) -> _Pass:
        """The whole image at the scale that shows a ``side`` x ``side`` window as one 128-pixel input."""
        scale = self.input_size / side
        return _Pass(
            scale=scale,
            shift_x=0.0,
            shift_y=0.0,
            width=_in_strides(width * scale),
            height=_in_strides(height * scale),
            threshold=max(self.score_threshold, self._fine_threshold),
        )

    def _input(self, pyramid: _Pyramid, view: _Pass) -> FloatArray:
        to_input = np.array([[view.scale, 0, view.shift_x], [0, view.scale, view.shift_y]], dtype=np.float64)
        source, factor_x, factor_y = pyramid.level(shrink=1 / view.scale)
        to_input[:, 0] *= factor_x
        to_input[:, 1] *= factor_y
        canvas = cv2.warpAffine(
            source, to_input, (view.width, view.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        # (pixel - 127.5) / 127.5 into an NCHW batch of one; the black border becomes -1.
        blob = cv2.dnn.blobFromImage(canvas, scalefactor=1 / 127.5, mean=(127.5, 127.5, 127.5))
        return np.asarray(blob, dtype=np.float32)

    def _run_all(
        self,
        pyramid: _Pyramid,
        views: list[_Pass],
        *,
        first_look: Callable[[list[tuple[float, FloatArray]]], None] | None = None,
    ) -> list[tuple[float, FloatArray]]:
        """Candidate faces of all ``views``; the first runs in this thread, the rest beside it when allowed,
        and then ``first_look`` gets the first view's candidates while the rest still run."""
        inputs = [self._input(pyramid, view) for view in views]
        if (
            self._side_thread is None
            or len(views) == 1
            or (self._side_by_side_while is not None and not self._side_by_side_while())
            or not self._side_thread_free.acquire(blocking=False)
        ):
            return self._run_each(inputs, views)
        try:
            beside = self._side_thread.submit(self._run_each, inputs[1:], views[1:])
            candidates = self._run(inputs[0], views[0])
            try:
                if first_look is not None:
                    first_look(candidates)
            finally:
                candidates += beside.result()  # also when first_look failed: the side thread must be done
            return candidates
        finally:
            self._side_thread_free.release()

    def _run_each(self, inputs: list[FloatArray], views: list[_Pass]) -> list[tuple[float, FloatArray]]:
        return [candidate for blob, view in zip(inputs, views, strict=True) for candidate in self._run(blob, view)]

    def _run(self, blob: FloatArray, view: _Pass) -> list[tuple[float, FloatArray]]:
        """Candidate faces of one pass: (score, geometry) with the box corners and six landmarks in image pixels."""
        regressors, classificators = self._session.run(None, {"input": blob})
        logits = classificators[0, :, 0]
        keep = np.flatnonzero(logits >= math.log(view.threshold / (1 - view.threshold)))  # sigmoid >= threshold
        if not len(keep):
            return []
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep], -80, 80)))
        raw = regressors[0, keep]
        anchors = _anchor_centres(view.width, view.height)[keep]
        centres, half = anchors + raw[:, 0:2], raw[:, 2:4] / 2
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        geometry = np.concatenate([centres - half, centres + half, points.reshape(-1, 12)], axis=1)
        geometry[:, 0::2] = (geometry[:, 0::2] - view.shift_x) / view.scale
        geometry[:, 1::2] = (geometry[:, 1::2] - view.shift_y) / view.scale
        return [(float(score), row) for score, row in zip(scores, geometry.astype(np.float32), strict=True)]

    def _merge(self, candidates: list[tuple[float, FloatArray]]) -> list[tuple[float, FloatArray]]:
        """Weighted non-maximum suppression: overlapping candidates are averaged by score."""
        if not candidates:
            return []
        order = sorted(range(len(candidates)), key=lambda i: candidates[i][0], reverse=True)
        scores = np.array([candidates[i][0] for i in order], dtype=np.float32)
        geometry = np.stack([candidates[i][1] for i in order])
        merged: list[tuple[float, FloatArray]] = []
        while len(scores):
            overlaps = _iou(geometry[0, :4], geometry[:, :4])
            group = overlaps >= self.iou_threshold
            weights = scores[group]
            merged.append((float(scores[0]), (geometry[group] * weights[:, None]).sum(axis=0) / weights.sum()))
            scores, geometry = scores[~group], geometry[~group]
        return merged

    @staticmethod
    def _to_detection(score: float, geometry: FloatArray, width: int, height: int) -> Detection:
        bounds = (float(geometry[0]), float(geometry[1]), float(geometry[2]), float(geometry[3]))
        points = tuple((float(x), float(y)) for x, y in geometry[4:].reshape(6, 2))
        return Detection(box=Box.clipped(bounds, width, height), score=score, bounds=bounds, keypoints=points)


def _in_strides(length: float) -> int:
    """The input side, a whole number of strides, that holds ``length`` pixels: a rounding error of a millionth
    of a pixel over a stride (208.00000000000003) does not add another stride, nor take the one stride that
    even a sliver of a pixel needs (a 1 x 39,000,000 image's height at 128 / 39,000,000)."""
    return max(1, math.ceil(length / _STRIDE - 1e-6)) * _STRIDE


def _score(found: Detection | None) -> float:
    return found.score if found else 0.0


def _surroundings(image: RGBImage, bounds: tuple[float, float, float, float], context: float) -> RGBImage:
    """The square around ``bounds`` (left, top, right, bottom) with ``context`` times its long side, inside
    ``image``."""
    height, width = image.shape[:2]
    left, top, right, bottom = bounds
    half = context * max(right - left, bottom - top) / 2
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    x0, y0 = max(0, round(centre_x - half)), max(0, round(centre_y - half))
    x1, y1 = min(width, round(centre_x + half)), min(height, round(centre_y + half))
    return image[y0:y1, x0:x1]


def _shrunk(image: RGBImage, shrink: float) -> RGBImage:
    """``image`` made ``shrink`` times smaller (each side at least one pixel), by area averaging."""
    height, width = image.shape[:2]
    size = (max(1, round(width / shrink)), max(1, round(height / shrink)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))


class _Pyramid:
    """An image and its halvings (each pixel the mean of 2x2), made when first asked for and shared by the
    passes over it. Bilinear sampling alone aliases when shrinking a lot, so each pass samples from the
    level that leaves it a shrink of 2 to 4. (Halving with cv2's bilinear resize is 4 times as fast as
    its area resize by other whole factors, which this replaced.)"""

    def __init__(self, image: RGBImage) -> None:
        self._levels = [image]
        self._factors = [(1, 1)]

    def level(self, *, shrink: float) -> tuple[RGBImage, int, int]:
        """The level for a pass that shrinks the image ``shrink`` times, and that level's factors: image pixels
        per level pixel across and down.

        A sliver of a photo (3 x 3,000 pixels) runs out of rows first: its last row stays while its columns
        go on halving, so the level is sampled with more shrink down than 4, aliasing a picture too thin to
        hold a face. A level with a side too long for cv2's warp (a panorama) gives way to the next one.
        """
        depth = math.floor(math.log2(shrink / 2)) if shrink >= 4 else 0
        while max(self._at(depth).shape[:2]) > WARP_SIDE_LIMIT:
            depth += 1
        factor_x, factor_y = self._factors[depth]
        return self._levels[depth], factor_x, factor_y

    def _at(self, depth: int) -> RGBImage:
        while len(self._levels) <= depth:
            self._halve()
        return self._levels[depth]

    def _halve(self) -> None:
        top = self._levels[-1]
        factor_x, factor_y = self._factors[-1]
        height, width = top.shape[:2]
        step_down, step_across = (2 if height > 1 else 1), (2 if width > 1 else 1)
        height, width = height // step_down, width // step_across
        # An even crop first, so that the level is exactly half (at most one edge row or column lost).
        even = top[: height * step_down, : width * step_across]
        self._levels.append(np.asarray(cv2.resize(even, (width, height), interpolation=cv2.INTER_LINEAR)))
        self._factors.append((factor_x * step_across, factor_y * step_down))


def _drop_contained(merged: list[tuple[float, FloatArray]], containment: float) -> list[tuple[float, FloatArray]]:
    """Of two faces where one has at least ``containment`` of its area inside the other, keep the surer."""
    kept: list[tuple[float, FloatArray]] = []
    for score, geometry in merged:  # surest first
        if all(_overlap_of_smaller(geometry[:4], other[:4]) < containment for _, other in kept):
            kept.append((score, geometry))
    return kept


def _overlap_of_smaller(box: FloatArray, other: FloatArray) -> float:
    """The share of the smaller box's area that lies inside the other (both left, top, right, bottom)."""
    width = max(0.0, float(min(box[2], other[2]) - max(box[0], other[0])))
    height = max(0.0, float(min(box[3], other[3]) - max(box[1], other[1])))
    smaller = min(float((box[2] - box[0]) * (box[3] - box[1])), float((other[2] - other[0]) * (other[3] - other[1])))
    return width * height / smaller if smaller > 0 else 1.0


def _iou(box: FloatArray, others: FloatArray) -> NDArray[np.float32]:
    """Intersection over union of ``box`` (left, top, right, bottom) with each row of ``others``."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = width * height
    union = (box[2] - box[0]) * (box[3] - box[1]) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = union - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)
