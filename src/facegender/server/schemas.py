"""The service's request and response bodies, as pydantic models (they also make the OpenAPI schema)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from facegender import __version__
from facegender.results import GenderLabel

__all__ = [
    "BatchFileError",
    "BatchFileResult",
    "BatchResponse",
    "ClassProbability",
    "ErrorDetail",
    "ErrorResponse",
    "FaceResult",
    "GenderResponse",
    "GenderResult",
    "HealthResponse",
    "ImageSize",
    "Meta",
    "ModelInfo",
    "PixelBox",
    "Prediction",
    "ReadyResponse",
    "error_response",
]


class ClassProbability(BaseModel):
    """One class and its probability."""

    class_: GenderLabel = Field(serialization_alias="class", examples=["male"])
    label: int = Field(ge=0, le=1, description="0 for female, 1 for male.", examples=[1])
    probability: float = Field(ge=0.0, le=1.0, examples=[0.98])


class Meta(BaseModel):
    """What answered the request, in the original service's words."""

    description: str = Field(
        examples=["Face detection (BlazeFace) and gender classification (MobileNetV2 trained on UTKFace)"]
    )
    language: str = Field(examples=["python"])
    library: str = Field(examples=[f"facegender {__version__} (onnxruntime)"])
    main: str = Field(examples=["computer vision (cv)"])
    programmer: str = Field(examples=["facegender contributors"])


class Prediction(ClassProbability):
    """The largest face's class, with both class probabilities."""

    predictions: list[ClassProbability] = Field(description="Female (label 0) then male (label 1).")
    meta: Meta


class PixelBox(BaseModel):
    """A face's bounding box in pixels of the upright image."""

    left: int = Field(examples=[120])
    top: int = Field(examples=[80])
    width: int = Field(examples=[240])
    height: int = Field(examples=[240])


class FaceResult(BaseModel):
    """One face found in the image."""

    box: PixelBox
    detection_score: float = Field(ge=0.0, le=1.0, examples=[0.97])
    class_: GenderLabel = Field(serialization_alias="class", examples=["male"])
    label: int = Field(ge=0, le=1, description="0 for female, 1 for male.", examples=[1])
    probability: float = Field(ge=0.0, le=1.0, examples=[0.98])
    predictions: list[ClassProbability] = Field(description="Female (label 0) then male (label 1).")
    head_turn: float | None = Field(
        default=None,
        ge=-90.0,
        le=90.0,
        description="Degrees the head is turned to one side, estimated from the detector's keypoints: 0 faces the "
        "camera, 90 is a profile; positive where the nose points to the image's right. Null with detect=false.",
        examples=[-12.5],
    )


class ImageSize(BaseModel):
    """The upright image's size in pixels."""

    width: int = Field(examples=[640])
    height: int = Field(examples=[480])


class ModelInfo(BaseModel):
    """The gender model in use."""

    name: str = Field(examples=["facegender-mobilenetv2"])
    version: str = Field(examples=["1.5.0+int8"])


class GenderResult(BaseModel):
    """The faces of one photo: the original service's body plus every face found."""

    success: Literal[True] = True
    predictions: Prediction = Field(description="The largest face.")
    faces: list[FaceResult] = Field(description="Every face, largest first.")
    image: ImageSize
    model: ModelInfo


class GenderResponse(GenderResult):
    """A successful prediction for one photo."""

    time_ms: float = Field(description="Time spent decoding and running the models.", examples=[42.5])


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(examples=["no_face"])
    message: str = Field(examples=["no face was found in the image"])


class ErrorResponse(BaseModel):
    """Any failed request."""

    success: Literal[False] = False
    error: ErrorDetail
    faces: list[FaceResult] = Field(default_factory=list, description="Always empty.")


def error_response(status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON answer of a failed request: an :class:`ErrorResponse` body."""
    body = ErrorResponse(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


class BatchFileResult(GenderResult):
    """One file of a batch whose faces were found."""

    index: int = Field(ge=0, description="The file's position in the request, from 0.", examples=[0])


class BatchFileError(ErrorResponse):
    """One file of a batch that could not be used; the other files are not affected."""

    index: int = Field(ge=0, description="The file's position in the request, from 0.", examples=[1])
    status: int = Field(description="The HTTP status this file would get on its own.", examples=[422])


class BatchResponse(BaseModel):
    """A processed batch: one entry per file, in request order."""

    success: Literal[True] = True
    results: list[BatchFileResult | BatchFileError] = Field(description="One entry per file, in request order.")
    time_ms: float = Field(description="Time spent decoding and running the models on the whole batch.")


class HealthResponse(BaseModel):
    """The process is up."""

    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    """The models are loaded and requests can be served."""

    status: Literal["ready"] = "ready"
    model: ModelInfo
