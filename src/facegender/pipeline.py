"""The pipeline: decode, detect, align, classify."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

import numpy as np

from facegender.align import face_chip, whole_image_chip
from facegender.classify import GenderClassifier
from facegender.decode import ImageSource, RGBImage, load_image
from facegender.detect import BlazeFaceDetector
from facegender.errors import FaceGenderError
from facegender.results import LABELS, Box, Detection, Face
from facegender.settings import Settings

__all__ = ["FaceGender"]


class FaceGender:
    """Finds every face in a photo and classifies it; load once, share across threads.

    >>> fg = FaceGender()
    >>> faces = fg.predict("photo.jpg")        # doctest: +SKIP
    >>> faces[0].label, faces[0].probability    # doctest: +SKIP
    ('female', 0.97)
    """

    def __init__(self, *, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.detector = BlazeFaceDetector(
            model_path=self.settings.detector_path,
            score_threshold=self.settings.detection_threshold,
            threads=self.settings.threads,
            min_face_size=self.settings.min_face_size,
        )
        self.classifier = GenderClassifier(model_path=self.settings.classifier_path, threads=self.settings.threads)

    @property
    def model_name(self) -> str:
        return self.classifier.name

    @property
    def model_version(self) -> str:
        return self.classifier.version

    def load(self, image: ImageSource) -> RGBImage:
        """Decode ``image`` with this instance's pixel limit."""
        return load_image(image, max_pixels=self.settings.max_pixels)

    def predict(self, image: ImageSource, *, detect: bool = True) -> list[Face]:
        """Every face in ``image``, largest first; an empty list when there is none.

        With ``detect=False`` the whole image is classified as one already-cropped face.

        Raises:
            InvalidImageError, UnsupportedFormatError, ImageTooLargeError: the image cannot be used.
        """
        return self.predict_batch([image], detect=detect)[0]

    @overload
    def predict_batch(
        self, images: Sequence[ImageSource], *, detect: bool = ..., return_exceptions: Literal[False] = ...
    ) -> list[list[Face]]: ...

    @overload
    def predict_batch(
        self, images: Sequence[ImageSource], *, detect: bool = ..., return_exceptions: Literal[True]
    ) -> list[list[Face] | FaceGenderError]: ...

    def predict_batch(
        self, images: Sequence[ImageSource], *, detect: bool = True, return_exceptions: bool = False
    ) -> list[list[Face]] | list[list[Face] | FaceGenderError]:
        """Faces for each image, with every face of every image classified in one model call.

        With ``return_exceptions=True`` an image that cannot be used yields its error in its place
        instead of failing the whole batch.
        """
        located: list[list[Detection] | FaceGenderError] = []
        chips: list[RGBImage] = []
        for source in images:
            try:
                rgb = self.load(source)
            except FaceGenderError as error:
                if not return_exceptions:
                    raise
                located.append(error)
                continue
            detections, image_chips = self._locate(rgb, detect=detect)
            located.append(detections)
            chips.extend(image_chips)
        probabilities = self.classifier.predict(np.stack(chips)) if chips else np.zeros((0, 2), np.float32)
        results: list[list[Face] | FaceGenderError] = []
        cursor = 0
        for entry in located:
            if isinstance(entry, FaceGenderError):
                results.append(entry)
                continue
            results.append([self._face(d, p) for d, p in zip(entry, probabilities[cursor:], strict=False)])
            cursor += len(entry)
        return results

    def _locate(self, rgb: RGBImage, *, detect: bool) -> tuple[list[Detection], list[RGBImage]]:
        size = self.classifier.input_size
        if detect:
            detections = self.detector.detect(rgb)
            return detections, [face_chip(rgb, d, size=size) for d in detections]
        height, width = rgb.shape[:2]
        whole = Detection(box=Box(0, 0, width, height), score=1.0, bounds=(0.0, 0.0, float(width), float(height)))
        return [whole], [whole_image_chip(rgb, size=size)]

    def _face(self, detection: Detection, probabilities: np.ndarray) -> Face:
        index = int(np.argmax(probabilities))
        return Face(
            box=detection.box,
            detection_score=round(detection.score, 4),
            label=LABELS[index],
            probability=float(probabilities[index]),
            probabilities={label: float(p) for label, p in zip(LABELS, probabilities, strict=True)},
            model_version=self.model_version,
        )
