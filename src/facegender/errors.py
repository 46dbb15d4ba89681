"""The exception tree that every part of facegender raises.

Each class carries a stable machine-readable ``code`` and the HTTP status and CLI exit code that the
adapters map it to, so that the library, the service and the command line agree on what went wrong.

    FaceGenderError
    ├── InvalidImageError          400  bad_image         bytes that are not a readable image
    │   └── UnsupportedFormatError 415  unsupported_format an image format we do not decode (HEIC, SVG, PDF…)
    ├── ImageTooLargeError         413  image_too_large   too many pixels (decompression bombs) or bytes
    ├── NoFaceError                422  no_face           a readable image without a face
    ├── ModelError                 503  model_unavailable a model file is missing, corrupt or failed to run
    └── DatasetError               400  bad_dataset       a training/evaluation folder we cannot read
"""

from __future__ import annotations

__all__ = [
    "DatasetError",
    "FaceGenderError",
    "ImageTooLargeError",
    "InvalidImageError",
    "ModelError",
    "NoFaceError",
    "UnsupportedFormatError",
]


class FaceGenderError(Exception):
    """Base class of every error facegender raises on purpose."""

    code: str = "error"
    http_status: int = 400
    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidImageError(FaceGenderError):
    """The input is empty, truncated, corrupt or not an image at all."""

    code = "bad_image"
    http_status = 400


class UnsupportedFormatError(InvalidImageError):
    """The input is a kind of file we recognise but do not decode."""

    code = "unsupported_format"
    http_status = 415


class ImageTooLargeError(FaceGenderError):
    """The image has more pixels or bytes than the configured limit."""

    code = "image_too_large"
    http_status = 413


class NoFaceError(FaceGenderError):
    """The image was read but no face was found in it."""

    code = "no_face"
    http_status = 422
    exit_code = 1


class ModelError(FaceGenderError):
    """A model file is missing or corrupt, or inference failed."""

    code = "model_unavailable"
    http_status = 503
    exit_code = 3


class DatasetError(FaceGenderError):
    """A dataset folder or label file cannot be read."""

    code = "bad_dataset"
    http_status = 400
