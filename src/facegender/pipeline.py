"""The pipeline: decode, detect, align, classify."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, overload

import numpy as np
from numpy.typing import NDArray

from facegender.align import chip_shrink, face_chip, head_turn, whole_image_chip
from facegender.classify import GenderClassifier
from facegender.decode import DecodedImage, ImageSource, RGBImage, decode_image, is_one_image
from facegender.detect import BlazeFaceDetector
from facegender.errors import FaceGenderError, InferenceFailedError, ModelError
from facegender.orientation import OrientationClassifier
from facegender.results import LABELS, Box, Detection, Face
from facegender.settings import Settings

__all__ = ["UNSURE_READING", "UPRIGHT_PROBABILITY", "FaceGender"]

logger = logging.getLogger(__name__)

UNSURE_READING: Final = 0.97
"""With ``turn_faces_upright``, a face found less surely than :data:`~facegender.detect.SURE_UPRIGHT_SCORE` is
looked at four ways only when it was also read less surely than this (the probability of its label): the model
is seldom sure of a face on its side or upside down. On the validation chips turned by 90, 180 and 270 degrees,
0.97 kept 681 of the 685 chips that looking at every such face gains (0.95 kept 675), with the upright chips'
answers unchanged and a quarter of them looked at instead of 72%
(``python tools/unsure_reading.py --data ../shared/data/utkface``)."""

UPRIGHT_PROBABILITY: Final = 0.5
"""With ``turn_faces_upright``, a face that :data:`UNSURE_READING` leaves to the four looks is spared them where the
orientation model finds its chip upright with at least this probability. On the validation chips turned four
ways, 0.5, the lowest value tried, kept 680 of the 681 chips that the two rules gain on those turned by 90, 180
and 270 degrees, with the upright chips' answers unchanged and 0.7% of them looked at instead of 25%
(``python tools/unsure_reading.py --data ../shared/data/utkface``)."""


class FaceGender:
    """Finds every face in a photo and classifies it; load once, share across threads.

    >>> fg = FaceGender()
    >>> faces = fg.predict("photo.jpg")        # doctest: +SKIP
    >>> faces[0].label, faces[0].probability    # doctest: +SKIP
    ('female', 0.97)
    """

    def __init__(self, *, settings: Settings | None = None, idle: Callable[[], bool] | None = None) -> None:
        """``idle``, where given, is asked before each photo whether nothing else waits for the CPU (a server:
        no request waiting); where it says no, the detector's passes over the photo run in turn on the calling
        thread rather than side by side, since the other cores have work of their own."""
        self.settings = settings or Settings()
        self.detector = BlazeFaceDetector(
            model_path=self.settings.detector_path,
            score_threshold=self.settings.detection_threshold,
            threads=self.settings.threads,
            min_face_size=self.settings.min_face_size,
            side_by_side_while=idle,
        )
        self.classifier = GenderClassifier(
            model_path=self.settings.classifier_path, threads=self.settings.classifier_threads
        )
        self.orientation = (
            OrientationClassifier(model_path=self.settings.orientation_path, threads=self.settings.classifier_threads)
            if self.settings.turn_faces_upright
            else None
        )
        if self.orientation is not None and self.orientation.input_size != self.classifier.input_size:
            # It reads the classifier's chips: a mismatch would fail every photo with a face to turn.
            raise ModelError(
                f"{self.settings.orientation_path.name} takes {self.orientation.input_size} px chips,"
                f" not the classifier's {self.classifier.input_size}"
            )

    @property
    def model_name(self) -> str:
        return self.classifier.name

    @property
    def model_version(self) -> str:
        return self.classifier.version

    def decode(self, image: ImageSource, *, detect: bool = True) -> DecodedImage:
        """Decode ``image`` with this instance's pixel limit, at the smallest scale that loses nothing.

        A big JPEG is decoded at 1/2, 1/4 or 1/8 scale as long as the detector's finest pass still shrinks
        what it sees at least twice (or, with ``detect=False``, the whole image keeps a chip's worth of
        pixels). A face found too small for a chip at that scale is cut from the photo decoded again, finer.
        Pass the result to :meth:`predict` or :meth:`predict_batch`; boxes come in full-size pixels.
        """
        return decode_image(
            image,
            max_pixels=self.settings.max_pixels,
            min_scale=self._min_detect_scale if detect else self._min_whole_scale,
        )

    def _min_detect_scale(self, width: int, height: int) -> float:
        # Shrinking at least twice is what the detector's pyramid gives every pass over a full-size photo.
        return min(1.0, 2 * self.detector.finest_scale(width, height))

    def _min_whole_scale(self, width: int, height: int) -> float:
        return min(1.0, self.classifier.input_size / min(width, height))

    def predict(self, image: ImageSource, *, detect: bool = True) -> list[Face]:
        """Every face in ``image``, largest first; an empty list when there is none.

        With ``detect=False`` the whole image is classified as one already-cropped face.

        Raises:
            InvalidImageError, UnsupportedFormatError, ImageTooLargeError: the image cannot be used.
            TypeError: ``image`` is none of the kinds that :data:`ImageSource` lists.
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
        """Faces for each image, with every face of every image classified in one model call (and with
        ``turn_faces_upright``, those turned upright after it in one more).

        With ``return_exceptions=True`` an image that cannot be used yields its error in its place
        instead of failing the whole batch; if the batch fails in an unexpected way, each image is run
        again alone, and one that still fails yields :class:`InferenceFailedError`.

        Raises:
            TypeError: ``images`` is one image (a path, bytes, a file object, a PIL image or one image's
                array), which would otherwise be taken apart into characters, bytes, lines or rows.
        """
        if is_one_image(images):
            raise TypeError(f"predict_batch takes a sequence of images, not one {type(images).__name__}: use predict")
        try:
            return self._predict_batch(images, detect=detect, return_exceptions=return_exceptions)
        except FaceGenderError:
            raise
        except Exception as exc:
            if not return_exceptions:
                raise
            if len(images) > 1:
                logger.warning("a batch of %d images failed; running them one at a time", len(images))
                return [self.predict_batch([image], detect=detect, return_exceptions=True)[0] for image in images]
            logger.exception("an image could not be processed")
            failed = InferenceFailedError("the image could not be processed")
            failed.__cause__ = exc
            alone: list[list[Face] | FaceGenderError] = [failed]
            return alone

    def _predict_batch(
        self, images: Sequence[ImageSource], *, detect: bool, return_exceptions: bool
    ) -> list[list[Face] | FaceGenderError]:
        located: list[_Located | FaceGenderError] = []
        chips: list[RGBImage] = []
        for source in images:
            try:
                decoded = self.decode(source, detect=detect)
            except FaceGenderError as error:
                if not return_exceptions:
                    raise
                located.append(error)
                continue
            faces = self._locate(decoded, detect=detect)
            located.append(faces)
            chips.extend(faces.chips)
        classified = iter(self.classifier.predict(np.stack(chips)) if chips else ())
        photos = [entry for entry in located if not isinstance(entry, FaceGenderError)]
        for photo in photos:
            for index in range(len(photo.detections)):
                if index not in photo.answers:
                    photo.answers[index] = next(classified)
        if self.orientation is not None:
            self._read_turned_faces_again(photos, self.orientation)
        return [
            entry
            if isinstance(entry, FaceGenderError)
            else [self._face(d, entry.answers[i]) for i, d in enumerate(entry.detections)]
            for entry in located
        ]

    def _read_turned_faces_again(self, photos: list[_Located], orientation: OrientationClassifier) -> None:
        """Replace the answer of each face read less surely than :data:`UNSURE_READING`, whose chip ``orientation``
        does not find upright, and that the detector finds surer of after a quarter turn (a photo that lost its
        orientation) by the answer for its chip cut turned upright."""
        unsure = [
            (photo, cut_from, index, face)
            for photo in photos
            if (cut_from := photo.cut_from) is not None
            for index, face in photo.turnable
            if float(photo.answers[index].max()) < UNSURE_READING
        ]
        if not unsure:
            return
        chips = np.stack(
            [self._chip(cut_from.pixels, face, downscale=cut_from.downscale) for _, cut_from, _, face in unsure]
        )
        turned_chips: list[RGBImage] = []
        replaced: list[tuple[_Located, int]] = []
        for (photo, cut_from, index, face), upright in zip(unsure, orientation.upright_probability(chips), strict=True):
            if upright < UPRIGHT_PROBABILITY and (turned := self.detector.turned_upright(cut_from.pixels, face)):
                turned_chips.append(self._chip(turned.pixels, turned.detection, downscale=cut_from.downscale))
                replaced.append((photo, index))
        if turned_chips:
            for (photo, index), answer in zip(replaced, self.classifier.predict(np.stack(turned_chips)), strict=True):
                photo.answers[index] = answer

    def _locate(self, image: DecodedImage, *, detect: bool) -> _Located:
        """Faces in full-size pixels, and the chips of those still to classify: cut from the decoded pixels,
        or from the photo decoded again finer where those are too coarse for a face."""
        size = self.classifier.input_size
        width, height = image.width, image.height
        if not detect:
            whole = Detection(box=Box(0, 0, width, height), score=1.0, bounds=(0.0, 0.0, float(width), float(height)))
            chips = [whole_image_chip(image.pixels, size=size)]
            return _Located(detections=[whole], chips=chips, answers={}, turnable=[], cut_from=None)
        first_answers: dict[Detection, NDArray[np.float32]] = {}

        def classify_first_look(first: list[Detection]) -> None:
            # Fills the wait for the detector's finer passes; a face they leave alone keeps this answer.
            if first and self._chips_from_decoded(image, first):
                answers = self.classifier.predict(np.stack(self._chips(image, first)))
                first_answers.update(zip(first, answers, strict=True))

        found = self.detector.detect(image.pixels, downscale=image.downscale, on_first_look=classify_first_look)
        cut_from = self._fine_enough_for_chips(image, found)
        reusable = first_answers if cut_from is image else {}  # (first-look chips were cut from image)
        answers = {i: reusable[d] for i, d in enumerate(found) if d in reusable}
        faces_cut = _faces_in(cut_from, found, found_in=image)
        turnable = (
            [(i, face) for i, face in enumerate(faces_cut) if self.detector.may_turn_upright(face)]
            if self.orientation is not None  # (loaded for turn_faces_upright alone)
            else []
        )
        return _Located(
            detections=[_moved(d, image.factor_x, image.factor_y, width, height) for d in found],
            chips=self._chips(cut_from, [face for i, face in enumerate(faces_cut) if i not in answers]),
            answers=answers,
            turnable=turnable,
            cut_from=cut_from if turnable else None,  # the pixels stay only while a face may be turned
        )

    def _chips(self, cut_from: DecodedImage, faces: list[Detection]) -> list[RGBImage]:
        """The chips of ``faces`` (in ``cut_from``'s pixels)."""
        return [self._chip(cut_from.pixels, face, downscale=cut_from.downscale) for face in faces]

    def _chip(self, pixels: RGBImage, face: Detection, *, downscale: float) -> RGBImage:
        """The classifier's chip of ``face`` in ``pixels`` (``downscale`` as for :func:`face_chip`)."""
        return face_chip(pixels, face, size=self.classifier.input_size, downscale=downscale)

    def _fine_enough_for_chips(self, image: DecodedImage, found: list[Detection]) -> DecodedImage:
        """``image``, or the same photo decoded again finer where a face would be enlarged into its chip."""
        if image.source is None or self._chips_from_decoded(image, found):
            return image
        scale = min(1.0, self._chip_scale(image, found))
        return decode_image(image.source, max_pixels=self.settings.max_pixels, min_scale=lambda width, height: scale)

    def _chips_from_decoded(self, image: DecodedImage, found: list[Detection]) -> bool:
        """Whether the chips of ``found`` are cut from ``image``'s own pixels."""
        return image.source is None or self._chip_scale(image, found) * image.downscale <= 1

    def _chip_scale(self, image: DecodedImage, found: list[Detection]) -> float:
        """The decoding scale at which no face of ``found`` is enlarged into its chip."""
        # chip_shrink is photo pixels per chip pixel: the decoded pixels must be at least that fine.
        size = self.classifier.input_size
        return max((1 / chip_shrink(d, size=size, downscale=image.downscale) for d in found), default=0)

    def _face(self, detection: Detection, probabilities: np.ndarray) -> Face:
        index = int(np.argmax(probabilities))
        return Face(
            box=detection.box,
            detection_score=round(detection.score, 4),
            label=LABELS[index],
            probability=float(probabilities[index]),
            probabilities={label: float(p) for label, p in zip(LABELS, probabilities, strict=True)},
            model_version=self.model_version,
            head_turn=None if (turn := head_turn(detection)) is None else round(turn, 1),
        )


@dataclass(frozen=True, slots=True)
class _Located:
    """One photo's faces, largest first, in full-size pixels. ``answers`` holds the classifier's answer for each
    face by its index, as far as known: ``chips`` are those of the faces it lacks, in order. With
    ``turn_faces_upright``, ``turnable`` lists the faces the detector may turn upright, by index, in the pixels of
    ``cut_from``: the decoded photo they are cut from (``None`` when there are none)."""

    detections: list[Detection]
    chips: list[RGBImage]
    answers: dict[int, NDArray[np.float32]]
    turnable: list[tuple[int, Detection]]
    cut_from: DecodedImage | None


def _faces_in(cut_from: DecodedImage, found: list[Detection], *, found_in: DecodedImage) -> list[Detection]:
    """``found`` (faces in ``found_in``'s pixels) in the pixels of ``cut_from``: the same photo."""
    cut_height, cut_width = cut_from.pixels.shape[:2]
    factor_x, factor_y = found_in.factor_x / cut_from.factor_x, found_in.factor_y / cut_from.factor_y
    return [_moved(d, factor_x, factor_y, cut_width, cut_height) for d in found]


def _moved(detection: Detection, factor_x: float, factor_y: float, width: int, height: int) -> Detection:
    """``detection`` scaled by the factors into a ``width`` x ``height`` image; itself where both are 1."""
    if factor_x == factor_y == 1:
        return detection
    return detection.rescaled(factor_x=factor_x, factor_y=factor_y, width=width, height=height)
