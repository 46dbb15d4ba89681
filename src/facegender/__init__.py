"""facegender: find the faces in a photo and tell, for each, man or woman, with calibrated probabilities.

>>> from facegender import FaceGender
>>> fg = FaceGender()
>>> faces = fg.predict("photo.jpg")  # doctest: +SKIP
"""

from facegender.decode import SUPPORTED_FORMATS, ImageSource, load_image
from facegender.errors import (
    BatchInputError,
    DatasetError,
    FaceGenderError,
    ImageTooLargeError,
    InferenceFailedError,
    InvalidImageError,
    MissingExtraError,
    ModelError,
    NoFaceError,
    ServiceError,
    UnsupportedFormatError,
)
from facegender.pipeline import FaceGender
from facegender.results import LABELS, Box, Detection, Face, GenderLabel
from facegender.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "LABELS",
    "SUPPORTED_FORMATS",
    "BatchInputError",
    "Box",
    "DatasetError",
    "Detection",
    "Face",
    "FaceGender",
    "FaceGenderError",
    "GenderLabel",
    "ImageSource",
    "ImageTooLargeError",
    "InferenceFailedError",
    "InvalidImageError",
    "MissingExtraError",
    "ModelError",
    "NoFaceError",
    "ServiceError",
    "Settings",
    "UnsupportedFormatError",
    "__version__",
    "load_image",
]
