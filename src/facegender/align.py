"""Face chips: the one function that crops faces, for training and for serving alike."""

from __future__ import annotations

import math
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from facegender.decode import RGBImage
from facegender.results import Detection

__all__ = [
    "CHIP_MARGIN",
    "TRAINING_DETAIL",
    "TRAINING_SHRINK_LIMIT",
    "WARP_SIDE_LIMIT",
    "along_and_across_the_eyes",
    "chip_detail",
    "chip_shrink",
    "face_chip",
    "head_turn",
    "whole_image_chip",
]

_GreyImage = NDArray[np.float32]

CHIP_MARGIN: Final = 1.25
"""Chip side as a multiple of the detector's box side: a little forehead, hair and chin around the face."""

TRAINING_SHRINK_LIMIT: Final = 2.4
"""The UTKFace training chips are made by shrinking their faces about 1.9 times (2.34 at most, over all 21,258).
A face shrunk more than this comes from a photo of higher resolution than any the model learnt from."""

TRAINING_DETAIL: Final = 6.5
"""The median :func:`chip_detail` of the UTKFace training chips (6.54 over every fifth one). Their sources are
soft (many were enlarged from small faces), while a sharp photo shrunk to a chip keeps about three times as
much fine detail (skin texture, pores): detail the model never saw on its training faces, and which pushed it
towards "male" (every portrait it got wrong before this was a woman's). Such chips are softened to this."""

WARP_SIDE_LIMIT: Final = 32766
"""The longest side, in pixels, of an image that cv2's affine warp takes or makes (it asserts under SHRT_MAX)."""

_SOFTEN_SIGMAS: Final = (0.3, 2.0)
"""The range of Gaussian blur (pixels of the chip) searched for the softening."""


def chip_detail(chip: RGBImage) -> float:
    """Fine detail of a chip: the mean absolute Laplacian of its grey levels."""
    return _detail(_grey(chip))


def chip_shrink(detection: Detection, *, size: int, downscale: float = 1.0) -> float:
    """How many times :func:`face_chip` shrinks the photo's face into a ``size`` chip (``downscale`` as there)."""
    left, top, right, bottom = detection.bounds
    return max(right - left, bottom - top) * CHIP_MARGIN * downscale / size


def _grey(chip: RGBImage) -> _GreyImage:
    return np.asarray(cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY), dtype=np.float32)


def _detail(grey: _GreyImage) -> float:
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def _soften(chip: RGBImage) -> RGBImage:
    """``chip`` blurred just enough for its :func:`chip_detail` to fall to ``TRAINING_DETAIL``.

    The blur is found by bisection on the grey image alone, then applied once to the colours.
    """
    grey = _grey(chip)
    if _detail(grey) <= TRAINING_DETAIL:
        return chip
    low, high = _SOFTEN_SIGMAS
    for _ in range(6):
        sigma = (low + high) / 2
        if _detail(np.asarray(cv2.GaussianBlur(grey, (0, 0), sigma), dtype=np.float32)) > TRAINING_DETAIL:
            low = sigma
        else:
            high = sigma
    return np.asarray(cv2.GaussianBlur(chip, (0, 0), high), dtype=np.uint8)


def face_chip(image: RGBImage, detection: Detection, *, size: int, downscale: float = 1.0) -> RGBImage:
    """Crop ``detection`` from ``image`` into a ``size`` x ``size`` chip, upright and centred.

    The chip is rotated so that the eyes are level, scaled so that the detector's box spans
    ``1 / CHIP_MARGIN`` of it, and padded by repeating edge pixels where it reaches past the image. A face
    shrunk more than ``TRAINING_SHRINK_LIMIT`` times from the photo is softened to the detail of the training
    chips; ``downscale`` says how many pixels of the photo each pixel of ``image`` stands for (a JPEG decoded
    at reduced scale has been shrunk already, and as sharply).
    """
    left, top, right, bottom = detection.bounds
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    side = max(right - left, bottom - top) * CHIP_MARGIN
    angle = 0.0
    if len(detection.keypoints) >= 2:
        (x1, y1), (x2, y2) = detection.keypoints[0], detection.keypoints[1]
        angle = math.degrees(math.atan2(y2 - y1, x2 - x1))
        if abs(angle) > 90:  # keypoints 0/1 are ordered left-to-right in the image
            angle -= math.copysign(180.0, angle)
    matrix = np.asarray(cv2.getRotationMatrix2D((centre_x, centre_y), angle, size / side), dtype=np.float64)
    matrix[0, 2] += size / 2 - centre_x
    matrix[1, 2] += size / 2 - centre_y
    interpolation = cv2.INTER_AREA if side > 2 * size else cv2.INTER_LINEAR
    if max(image.shape[:2]) > WARP_SIDE_LIMIT:
        image, matrix = _around(image, matrix, centre=(centre_x, centre_y), reach=side / math.sqrt(2))
    chip: RGBImage = np.asarray(
        cv2.warpAffine(image, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE),
        dtype=np.uint8,
    )
    if chip_shrink(detection, size=size, downscale=downscale) > TRAINING_SHRINK_LIMIT:
        chip = _soften(chip)
    return np.ascontiguousarray(chip)


def _around(
    image: RGBImage, matrix: NDArray[np.float64], *, centre: tuple[float, float], reach: float
) -> tuple[RGBImage, NDArray[np.float64]]:
    """The part of ``image`` within ``reach`` pixels (and two more, for interpolation) of ``centre``, and
    ``matrix`` moved to it: the warp then samples the very same pixels from an image short enough for it (a
    panorama). Where the part stops at the image's edge, the warp's replicated border is the image's own."""
    height, width = image.shape[:2]
    centre_x, centre_y = centre
    left, top = max(0, math.floor(centre_x - reach) - 2), max(0, math.floor(centre_y - reach) - 2)
    right, bottom = min(width, math.ceil(centre_x + reach) + 3), min(height, math.ceil(centre_y + reach) + 3)
    moved = matrix.copy()
    moved[:, 2] += matrix[:, 0] * left + matrix[:, 1] * top
    return image[top:bottom, left:right], moved


def head_turn(detection: Detection) -> float | None:
    """How far the head is turned to one side, in degrees, estimated from the detector's keypoints: 0 faces the
    camera, 90 is a profile; positive where the nose points to the image's right. ``None`` without keypoints.

    Seen along the line of the eyes, the nose tip lies between the two ear points. Taking the head as a sphere
    with the nose on its front and the ears at its sides, a turn by t puts the nose sin(t) from the ears'
    midpoint and the ears 2 cos(t) apart (radii), so the difference of the nose's distances to the two ears
    over their sum is tan(t). The nose stands out from the sphere, so strong turns read higher than a head
    protractor would say; the estimate is for sorting faces into bands, not for measuring them.
    """
    if len(detection.keypoints) < 6:
        return None
    (nose_x, nose_y), _, (first_x, first_y), (second_x, second_y) = detection.keypoints[2:6]
    to_first_ear, _ = along_and_across_the_eyes(detection, dx=nose_x - first_x, dy=nose_y - first_y)
    to_second_ear, _ = along_and_across_the_eyes(detection, dx=second_x - nose_x, dy=second_y - nose_y)
    # Ears seen on top of each other (or crossed) can only be a profile: atan2 then gives +-90.
    return math.degrees(math.atan2(to_first_ear - to_second_ear, max(to_first_ear + to_second_ear, 0.0)))


def along_and_across_the_eyes(detection: Detection, *, dx: float, dy: float) -> tuple[float, float]:
    """The image offset (``dx``, ``dy``) measured along the line from ``detection``'s first eye keypoint to its
    second, and across it (downwards on an upright face): the face's own axes, whatever its tilt."""
    (first_x, first_y), (second_x, second_y) = detection.keypoints[:2]
    eyes = math.atan2(second_y - first_y, second_x - first_x)
    cos, sin = math.cos(eyes), math.sin(eyes)
    return dx * cos + dy * sin, dy * cos - dx * sin


def whole_image_chip(image: RGBImage, *, size: int) -> RGBImage:
    """Treat the whole image as one already-cropped face: centre square, resized to ``size``."""
    height, width = image.shape[:2]
    side = min(width, height)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(square, (size, size), interpolation=interpolation))
