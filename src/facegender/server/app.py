"""The HTTP service: a thin FastAPI adapter over one shared :class:`~facegender.FaceGender`."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any, Final, Literal

import uvicorn
from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from facegender import __version__
from facegender.errors import FaceGenderError, ImageTooLargeError, ModelError, NoFaceError
from facegender.pipeline import FaceGender
from facegender.results import LABELS, Face, GenderLabel
from facegender.settings import Settings

__all__ = [
    "ClassProbability",
    "ErrorDetail",
    "ErrorResponse",
    "FaceResult",
    "GenderResponse",
    "HealthResponse",
    "ImageSize",
    "Meta",
    "ModelInfo",
    "PixelBox",
    "Prediction",
    "ReadyResponse",
    "app_from_env",
    "create_app",
    "serve",
]

logger = logging.getLogger(__name__)

_CHUNK_BYTES: Final = 64 * 1024
_DECIMALS: Final = 4


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


class ImageSize(BaseModel):
    """The upright image's size in pixels."""

    width: int = Field(examples=[640])
    height: int = Field(examples=[480])


class ModelInfo(BaseModel):
    """The gender model in use."""

    name: str = Field(examples=["facegender-mobilenetv2"])
    version: str = Field(examples=["1.0.0"])


class GenderResponse(BaseModel):
    """A successful prediction: the original service's body plus every face found."""

    success: Literal[True] = True
    predictions: Prediction = Field(description="The largest face.")
    faces: list[FaceResult] = Field(description="Every face, largest first.")
    image: ImageSize
    model: ModelInfo
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


class HealthResponse(BaseModel):
    """The process is up."""

    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    """The models are loaded and requests can be served."""

    status: Literal["ready"] = "ready"
    model: ModelInfo


class _InferenceFailedError(FaceGenderError):
    """An unexpected failure while running the models."""

    code = "inference_failed"
    http_status = 503


def _error_doc(description: str, code: str, message: str) -> dict[str, Any]:
    example = ErrorResponse(error=ErrorDetail(code=code, message=message)).model_dump(mode="json")
    return {"model": ErrorResponse, "description": description, "content": {"application/json": {"example": example}}}


_PREDICT_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: _error_doc("No file field named `image`, or bytes that are not an image.", "bad_image", "not an image"),
    413: _error_doc("The upload has too many bytes or pixels.", "image_too_large", "the upload is too large"),
    415: _error_doc("An image format that is not decoded (HEIC, SVG, PDF…).", "unsupported_format", "HEIC"),
    422: _error_doc("The image was read but has no face.", "no_face", "no face was found in the image"),
    503: _error_doc("The models are not loaded or failed.", "inference_failed", "the image could not be processed"),
}

_META: Final = Meta(
    description="Face detection (BlazeFace) and gender classification (MobileNetV2 trained on UTKFace)",
    language="python",
    library=f"facegender {__version__} (onnxruntime)",
    main="computer vision (cv)",
    programmer="facegender contributors",
)


def _error_response(status: int, code: str, message: str) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


async def _facegender_error(_: Request, exc: FaceGenderError) -> JSONResponse:
    return _error_response(exc.http_status, exc.code, exc.message)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    if any(error["loc"][:1] == ("body",) for error in exc.errors()):
        return _error_response(400, "missing_image", "send the image as a multipart file field named 'image'")
    problems = "; ".join(f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors())
    return _error_response(400, "bad_request", problems)


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    phrase = HTTPStatus(exc.status_code).phrase
    message = exc.detail if isinstance(exc.detail, str) else phrase
    return _error_response(exc.status_code, phrase.lower().replace(" ", "_").replace("-", "_"), message)


async def _unexpected_error(_: Request, __: Exception) -> JSONResponse:
    return _error_response(503, _InferenceFailedError.code, "the request could not be processed; try again later")


def _facegender(request: Request) -> FaceGender:
    engine = getattr(request.app.state, "facegender", None)
    if not isinstance(engine, FaceGender):
        raise ModelError("the models are not loaded yet")
    return engine


Engine = Annotated[FaceGender, Depends(_facegender)]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.facegender = await run_in_threadpool(lambda: FaceGender(settings=app.state.settings))
    yield


async def _read_upload(upload: UploadFile, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise ImageTooLargeError(f"the upload is larger than the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _infer(engine: FaceGender, data: bytes, detect: bool) -> tuple[ImageSize, list[Face], float]:
    start = time.perf_counter()
    rgb = engine.load(data)
    faces = engine.predict(rgb, detect=detect)
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    return ImageSize(width=rgb.shape[1], height=rgb.shape[0]), faces, elapsed_ms


def _class_probabilities(face: Face) -> list[ClassProbability]:
    return [
        ClassProbability(class_=label, label=index, probability=round(face.probabilities[label], _DECIMALS))
        for index, label in enumerate(LABELS)
    ]


def _face_result(face: Face) -> FaceResult:
    box = face.box
    return FaceResult(
        box=PixelBox(left=box.left, top=box.top, width=box.width, height=box.height),
        detection_score=face.detection_score,
        class_=face.label,
        label=face.label_index,
        probability=round(face.probability, _DECIMALS),
        predictions=_class_probabilities(face),
    )


async def predict_gender(
    request: Request,
    engine: Engine,
    image: Annotated[UploadFile, File(description="The photo: JPEG, PNG, WebP, BMP, GIF or TIFF.")],
    detect: Annotated[bool, Query(description="False classifies the whole image as one face.")] = True,
) -> GenderResponse:
    """Find the faces in a photo and tell, for each, man or woman."""
    data = await _read_upload(image, engine.settings.max_upload_bytes)
    try:
        size, faces, elapsed_ms = await run_in_threadpool(_infer, engine, data, detect)
    except FaceGenderError:
        raise
    except Exception as exc:
        logger.exception("inference failed on %s %s", request.method, request.url.path)
        raise _InferenceFailedError("the image could not be processed; try again later") from exc
    if not faces:
        raise NoFaceError("no face was found in the image")
    largest = faces[0]
    return GenderResponse(
        predictions=Prediction(
            class_=largest.label,
            label=largest.label_index,
            probability=round(largest.probability, _DECIMALS),
            predictions=_class_probabilities(largest),
            meta=_META,
        ),
        faces=[_face_result(face) for face in faces],
        image=size,
        model=ModelInfo(name=engine.model_name, version=engine.model_version),
        time_ms=round(elapsed_ms, 2),
    )


async def health() -> HealthResponse:
    """The process is up (liveness)."""
    return HealthResponse()


async def ready(engine: Engine) -> ReadyResponse:
    """The models are loaded (readiness); 503 until then."""
    return ReadyResponse(model=ModelInfo(name=engine.model_name, version=engine.model_version))


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI app; its lifespan loads one :class:`FaceGender` shared by all requests."""
    app = FastAPI(
        title="facegender",
        version=__version__,
        description="Find the faces in a photo and tell, for each, man or woman, with calibrated probabilities.",
        lifespan=_lifespan,
        exception_handlers={
            FaceGenderError: _facegender_error,
            RequestValidationError: _validation_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
    )
    app.state.settings = settings
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=False,
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
    )
    for path, summary in (("/api/gender", "Predict gender"), ("/predict", "Predict gender (alias of /api/gender)")):
        app.add_api_route(
            path,
            predict_gender,
            methods=["POST"],
            response_model=GenderResponse,
            responses=_PREDICT_ERRORS,
            summary=summary,
            tags=["gender"],
        )
    app.add_api_route("/health", health, methods=["GET"], response_model=HealthResponse, tags=["service"])
    app.add_api_route(
        "/ready",
        ready,
        methods=["GET"],
        response_model=ReadyResponse,
        responses={503: _error_doc("The models are not loaded.", "model_unavailable", "the models are not loaded yet")},
        tags=["service"],
    )
    return app


def app_from_env() -> FastAPI:
    """The app with settings from the ``FACEGENDER_*`` environment; uvicorn's factory in every worker."""
    return create_app(Settings.model_validate({}))


def serve(settings: Settings) -> None:
    """Load the models once to fail fast (``ModelError``), then run uvicorn with ``settings.workers`` workers."""
    FaceGender(settings=settings)
    # Workers build their own Settings from the environment, so hand them these exact values.
    for name, value in settings.model_dump(mode="json").items():
        os.environ[f"FACEGENDER_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    uvicorn.run(
        "facegender.server.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
    )
