"""The exception tree that every part of facegender raises.

Each class carries a stable machine-readable ``code`` and the HTTP status and CLI exit code that the
adapters map it to, so that the library, the service and the command line agree on what went wrong.

    FaceGenderError
    ├── InvalidImageError          400  bad_image         bytes that are not a readable image
    │   └── UnsupportedFormatError 415  unsupported_format an image format we do not decode (HEIC, SVG, PDF…)
    ├── ImageTooLargeError         413  image_too_large   too many pixels (decompression bombs) or bytes
    ├── NoFaceError                422  no_face           a readable image without a face
    ├── ModelError                 503  model_unavailable a model file is missing, corrupt or failed to run
    ├── DatasetError               400  bad_dataset       a training/evaluation folder we cannot read
    ├── BatchInputError            400  bad_batch_input   a batch INPUT or --out the batch job cannot use
    ├── MissingExtraError          501  missing_extra     an optional package (an extra) is not installed
    ├── InferenceFailedError       503  inference_failed  an unexpected failure on one image of a batch
    └── ServiceError                                      raised by the HTTP service only
        ├── BadRequestError        400  bad_request       a request the service cannot take as sent
        ├── TooManyFilesError      413  too_many_files    a batch over the file limit
        ├── UploadTimeoutError     408  upload_timeout    the request body did not arrive within the timeout
        ├── OverloadedError        503  overloaded        every inference slot busy and the queue full
        └── RequestTimeoutError    503  timeout           no answer within the request timeout
"""

from __future__ import annotations

__all__ = [
    "BadRequestError",
    "BatchInputError",
    "DatasetError",
    "FaceGenderError",
    "ImageTooLargeError",
    "InferenceFailedError",
    "InvalidImageError",
    "MissingExtraError",
    "ModelError",
    "NoFaceError",
    "OverloadedError",
    "RequestTimeoutError",
    "ServiceError",
    "TooManyFilesError",
    "UnsupportedFormatError",
    "UploadTimeoutError",
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


class BatchInputError(FaceGenderError):
    """A batch job's INPUT lists nothing readable, or its output belongs to another format or job."""

    code = "bad_batch_input"
    http_status = 400


class MissingExtraError(FaceGenderError):
    """A feature needs an optional package that is not installed; the message names the extra."""

    code = "missing_extra"
    http_status = 501
    exit_code = 5


class InferenceFailedError(FaceGenderError):
    """An unexpected failure while processing one image; ``predict_batch(return_exceptions=True)`` puts it in
    that image's place (the cause is chained and logged, never put in the message)."""

    code = "inference_failed"
    http_status = 503
    exit_code = 3


class ServiceError(FaceGenderError):
    """Errors of the HTTP service itself; the library never raises these."""


class BadRequestError(ServiceError):
    """A request the service cannot take as sent, e.g. two ``image`` fields for one photo."""

    code = "bad_request"
    http_status = 400


class TooManyFilesError(ServiceError):
    """A batch with more files than ``settings.max_batch_files``."""

    code = "too_many_files"
    http_status = 413


class UploadTimeoutError(ServiceError):
    """The request body was still arriving when ``settings.request_timeout_s`` ran out."""

    code = "upload_timeout"
    http_status = 408


class OverloadedError(ServiceError):
    """Every inference slot is busy and the queue in front of them is full."""

    code = "overloaded"
    http_status = 503


class RequestTimeoutError(ServiceError):
    """The request was received but not answered within ``settings.request_timeout_s``."""

    code = "timeout"
    http_status = 503
