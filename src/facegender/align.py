"""Face chips: the one function that crops faces, for training and for serving alike."""

from __future__ import annotations

import math
from typing import Final

import cv2
import numpy as np

from facegender.decode import RGBImage
from facegender.results import Detection

__all__ = ["CHIP_MARGIN", "face_chip", "whole_image_chip"]

CHIP_MARGIN: Final = 1.25
"""Chip side as a multiple of the detector's box side: a little forehead, hair and chin around the face."""


def face_chip(image: RGBImage, detection: Detection, *, size: int) -> RGBImage:
    """Crop ``detection`` from ``image`` into a ``size`` x ``size`` chip, upright and centred.

    The chip is rotated so that the eyes are level, scaled so that the detector's box spans
    ``1 / CHIP_MARGIN`` of it, and padded by repeating edge pixels where it reaches past the image.
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
    matrix = cv2.getRotationMatrix2D((centre_x, centre_y), angle, size / side)
    matrix[0, 2] += size / 2 - centre_x
    matrix[1, 2] += size / 2 - centre_y
    interpolation = cv2.INTER_AREA if side > 2 * size else cv2.INTER_LINEAR
    chip = cv2.warpAffine(image, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(chip)


def whole_image_chip(image: RGBImage, *, size: int) -> RGBImage:
    """Treat the whole image as one already-cropped face: centre square, resized to ``size``."""
    height, width = image.shape[:2]
    side = min(width, height)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(square, (size, size), interpolation=interpolation))
