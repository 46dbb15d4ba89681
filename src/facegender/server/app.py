"""The HTTP service: a thin FastAPI adapter over one shared :class:`~facegender.FaceGender`."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any, Final, TypeVar

from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from facegender import __version__
from facegender.decode import DecodedImage
from facegender.errors import (
    BadRequestError,
    FaceGenderError,
    ImageTooLargeError,
    InferenceFailedError,
    ModelError,
    NoFaceError,
    TooManyFilesError,
)
from facegender.pipeline import FaceGender
from facegender.results import LABELS, Face
from facegender.server import supervisor
from facegender.server.limits import MULTIPART_OVERHEAD_BYTES, InferenceLimiter, RequestLimitsMiddleware, retry_headers
from facegender.server.memory import return_freed_memory_promptly
from facegender.server.metrics import Metrics, MetricsMiddleware, metrics_endpoint
from facegender.server.schemas import (
    BatchFileError,
    BatchFileResult,
    BatchResponse,
    ClassProbability,
    ErrorDetail,
    ErrorResponse,
    FaceResult,
    GenderResponse,
    GenderResult,
    HealthResponse,
    ImageSize,
    Meta,
    ModelInfo,
    PixelBox,
    Prediction,
    ReadyResponse,
    error_response,
)
from facegender.server.security import (
    REQUEST_ID_HEADER,
    ApiKeyMiddleware,
    RequestContextMiddleware,
    configure_access_log,
)
from facegender.server.web import add_web_routes
from facegender.settings import Settings

__all__ = ["app_from_env", "create_app", "prepare_workers", "serve"]

logger = logging.getLogger(__name__)

_DECIMALS: Final = 4
_Result = TypeVar("_Result", bound=GenderResult)
_Upload = bytes | FaceGenderError
_Outcome = tuple[ImageSize, list[Face]] | FaceGenderError
"""One photo's size and faces (never empty), or why it could not be used."""


def _error_doc(description: str, code: str, message: str) -> dict[str, Any]:
    example = ErrorResponse(error=ErrorDetail(code=code, message=message)).model_dump(mode="json")
    return {"model": ErrorResponse, "description": description, "content": {"application/json": {"example": example}}}


_UNAVAILABLE_DOC: Final = _error_doc(
    "The models are not loaded or failed, or the server is busy (`overloaded`) or did not answer within the request "
    "timeout (`timeout`), both with a `Retry-After` header.",
    "inference_failed",
    "the image could not be processed",
)
_UPLOAD_TIMEOUT_DOC: Final = _error_doc(
    "The body was still arriving when the request timeout ran out.", "upload_timeout", "the body did not arrive"
)
_PREDICT_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: _error_doc(
        "No file field named `image` (`missing_image`), more than one (`bad_request`), a malformed multipart body "
        "(`bad_request`), or bytes that are not an image (`bad_image`).",
        "bad_image",
        "not an image",
    ),
    408: _UPLOAD_TIMEOUT_DOC,
    413: _error_doc("The upload has too many bytes or pixels.", "image_too_large", "the upload is too large"),
    415: _error_doc("An image format that is not decoded (HEIC, SVG, PDF…).", "unsupported_format", "HEIC"),
    422: _error_doc("The image was read but has no face.", "no_face", "no face was found in the image"),
    503: _UNAVAILABLE_DOC,
}
_BATCH_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: _error_doc("No file field named `images`.", "missing_image", "send the photos as multipart file fields"),
    408: _UPLOAD_TIMEOUT_DOC,
    413: _error_doc("More files than the batch limit.", "too_many_files", "send at most 16 files in one batch"),
    503: _UNAVAILABLE_DOC,
}

_META: Final = Meta(
    description="Face detection (BlazeFace) and gender classification (MobileNetV2 trained on UTKFace)",
    language="python",
    library=f"facegender {__version__} (onnxruntime)",
    main="computer vision (cv)",
    programmer="facegender contributors",
)


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def _limiter_of(app: FastAPI) -> InferenceLimiter:
    limiter: InferenceLimiter = app.state.limiter
    return limiter


def _error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    _metrics(request).count_error(code)
    return error_response(status, code, message, headers=headers)


async def _facegender_error(request: Request, exc: FaceGenderError) -> JSONResponse:
    return _error_response(request, exc.http_status, exc.code, exc.message, headers=retry_headers(exc) or None)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    body_errors = [error["loc"] for error in exc.errors() if error["loc"][:1] == ("body",)]
    if body_errors:
        field = body_errors[0][1] if len(body_errors[0]) > 1 else "image"
        return _error_response(
            request, 400, "missing_image", f"send the photo as a multipart file field named {field!r}"
        )
    problems = "; ".join(f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors())
    return _error_response(request, 400, "bad_request", problems)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    phrase = HTTPStatus(exc.status_code).phrase
    message = exc.detail if isinstance(exc.detail, str) else phrase
    return _error_response(request, exc.status_code, phrase.lower().replace(" ", "_").replace("-", "_"), message)


async def _unexpected_error(request: Request, __: Exception) -> JSONResponse:
    code, message = InferenceFailedError.code, "the request could not be processed; try again later"
    return _error_response(request, InferenceFailedError.http_status, code, message)


async def _facegender(request: Request) -> FaceGender:
    # async, though it awaits nothing: FastAPI runs a plain function dependency on a worker thread, a thread
    # hop per request for an attribute lookup (with the inference stubbed out, 0.88 against 0.64 ms per request).
    engine = getattr(request.app.state, "facegender", None)
    if not isinstance(engine, FaceGender):
        raise ModelError("the models are not loaded yet")
    return engine


Engine = Annotated[FaceGender, Depends(_facegender)]
Detect = Annotated[bool, Query(description="False classifies each whole image as one face.")]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    return_freed_memory_promptly()
    limiter = _limiter_of(app)
    app.state.facegender = await run_in_threadpool(
        lambda: FaceGender(settings=app.state.settings, idle=lambda: limiter.waiting == 0)
    )
    try:
        yield
    finally:
        limiter.close()


async def _read_upload(upload: UploadFile, limit: int) -> _Upload:
    """The upload's bytes, or an ``ImageTooLargeError`` if it has more than ``limit``.

    The multipart parser has already spooled the part and knows its size, so an oversize one is never read.
    """
    if upload.size is None or upload.size <= limit:
        data = await upload.read(limit + 1)
        if len(data) <= limit:
            return data
    return ImageTooLargeError(f"the upload is larger than the limit of {limit:,} bytes")


def _decode(engine: FaceGender, upload: _Upload, detect: bool) -> DecodedImage | FaceGenderError:
    if isinstance(upload, FaceGenderError):
        return upload
    try:
        return engine.decode(upload, detect=detect)
    except FaceGenderError as error:
        return error


def _infer(engine: FaceGender, uploads: Sequence[_Upload], detect: bool) -> tuple[list[_Outcome], float]:
    """Each upload's outcome, with every face of every photo classified in one model call; and the time taken."""
    start = time.perf_counter()
    decoded = [_decode(engine, upload, detect) for upload in uploads]
    images = [image for image in decoded if not isinstance(image, FaceGenderError)]
    predicted = iter(engine.predict_batch(images, detect=detect, return_exceptions=True))
    outcomes: list[_Outcome] = []
    for image in decoded:
        if isinstance(image, FaceGenderError):
            outcomes.append(image)
            continue
        faces = next(predicted)
        if isinstance(faces, FaceGenderError):
            outcomes.append(faces)
        elif not faces:
            outcomes.append(NoFaceError("no face was found in the image"))
        else:
            outcomes.append((ImageSize(width=image.width, height=image.height), faces))
    return outcomes, (time.perf_counter() - start) * 1000.0


async def _predict(
    request: Request, engine: FaceGender, uploads: Sequence[UploadFile], detect: bool
) -> tuple[list[_Outcome], float]:
    """Read and run ``uploads`` off the event loop, one of a bounded number at a time.

    A full queue is :class:`OverloadedError` (503); a failure that is not a :class:`FaceGenderError` becomes 503.
    """
    data = [await _read_upload(upload, engine.settings.max_upload_bytes) for upload in uploads]
    try:
        outcomes, elapsed_ms = await _limiter_of(request.app).run(_infer, engine, data, detect)
    except FaceGenderError:
        raise
    except Exception as exc:
        request_id = getattr(request.state, "request_id", "-")
        logger.exception("inference failed on %s %s (request %s)", request.method, request.url.path, request_id)
        raise InferenceFailedError("the image could not be processed; try again later") from exc
    _metrics(request).count_faces(face for outcome in outcomes if isinstance(outcome, tuple) for face in outcome[1])
    return outcomes, elapsed_ms


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
        head_turn=face.head_turn,
    )


def _model_info(engine: FaceGender) -> ModelInfo:
    return ModelInfo(name=engine.model_name, version=engine.model_version)


def _gender_result(
    model: type[_Result], engine: FaceGender, size: ImageSize, faces: list[Face], **extra: Any
) -> _Result:
    """One photo's body as ``model``: the largest face in ``predictions``, then every face."""
    largest = faces[0]
    return model(
        predictions=Prediction(
            class_=largest.label,
            label=largest.label_index,
            probability=round(largest.probability, _DECIMALS),
            predictions=_class_probabilities(largest),
            meta=_META,
        ),
        faces=[_face_result(face) for face in faces],
        image=size,
        model=_model_info(engine),
        **extra,
    )


async def predict_gender(
    request: Request,
    engine: Engine,
    image: Annotated[UploadFile, File(description="The photo: JPEG, PNG, WebP, BMP, GIF or TIFF.")],
    detect: Detect = True,
) -> GenderResponse:
    """Find the faces in a photo and tell, for each, man or woman.

    Send exactly one ``image`` field: several are refused (``bad_request``) rather than one picked silently;
    ``/api/gender/batch`` takes several photos. The file name and content type of the part are not used.
    """
    form = await request.form()  # already parsed for ``image``: this is the cached form
    if len(form.getlist("image")) > 1:
        raise BadRequestError("send one image in the field 'image'; use /api/gender/batch for several")
    (outcome,), elapsed_ms = await _predict(request, engine, [image], detect)
    if isinstance(outcome, FaceGenderError):
        raise outcome
    size, faces = outcome
    return _gender_result(GenderResponse, engine, size, faces, time_ms=round(elapsed_ms, 2))


async def predict_gender_batch(
    request: Request,
    engine: Engine,
    images: Annotated[list[UploadFile], File(description="The photos, one multipart file field `images` each.")],
    detect: Detect = True,
) -> BatchResponse:
    """Find and classify the faces of several photos at once; each file gets its own result or error."""
    limit = engine.settings.max_batch_files
    if len(images) > limit:
        raise TooManyFilesError(f"send at most {limit} files in one batch, not {len(images)}")
    outcomes, elapsed_ms = await _predict(request, engine, images, detect)
    results: list[BatchFileResult | BatchFileError] = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, FaceGenderError):
            _metrics(request).count_error(outcome.code)
            error = ErrorDetail(code=outcome.code, message=outcome.message)
            results.append(BatchFileError(error=error, index=index, status=outcome.http_status))
        else:
            results.append(_gender_result(BatchFileResult, engine, *outcome, index=index))
    return BatchResponse(results=results, time_ms=round(elapsed_ms, 2))


async def health() -> HealthResponse:
    """The process is up (liveness)."""
    return HealthResponse()


async def ready(engine: Engine) -> ReadyResponse:
    """The models are loaded (readiness); 503 until then."""
    return ReadyResponse(model=_model_info(engine))


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
    app.state.metrics = Metrics()
    app.state.limiter = InferenceLimiter(settings.concurrent_inferences, settings.max_queue)
    # Innermost first: body caps and the deadline apply to authorised requests only; the key check runs inside
    # CORS (preflights pass, 401s get CORS headers) and metrics; the request id, security headers and access log
    # wrap everything.
    photo_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    app.add_middleware(
        RequestLimitsMiddleware,
        body_limits={
            "/api/gender": photo_limit,
            "/predict": photo_limit,
            "/api/gender/batch": settings.max_upload_bytes * settings.max_batch_files + MULTIPART_OVERHEAD_BYTES,
        },
        default_limit=MULTIPART_OVERHEAD_BYTES,
        timeout_s=settings.request_timeout_s,
        metrics=app.state.metrics,
    )
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys, metrics=app.state.metrics)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=False,
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
        expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, routes=app.router.routes)
    app.add_middleware(RequestContextMiddleware)
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
    app.add_api_route(
        "/api/gender/batch",
        predict_gender_batch,
        methods=["POST"],
        response_model=BatchResponse,
        responses=_BATCH_ERRORS,
        summary="Predict gender for several photos",
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
    app.add_api_route(
        "/metrics",
        metrics_endpoint,
        methods=["GET"],
        response_class=PlainTextResponse,
        summary="Prometheus metrics of this worker process",
        tags=["service"],
    )
    add_web_routes(app)
    return app


def app_from_env() -> FastAPI:
    """The app with settings from the ``FACEGENDER_*`` environment; uvicorn's factory in every worker.

    It also sends the ``facegender`` logs, with one access record per request, to stderr (JSON lines if
    ``log_json``); uvicorn has set up its own loggers by then and they are left alone.
    """
    settings = Settings.model_validate({})
    configure_access_log(settings.log_json)
    return create_app(settings)


def prepare_workers(settings: Settings) -> None:
    """Load the models once to fail fast (``ModelError``), then put ``settings`` in the environment.

    Workers build their own Settings from the environment, so this hands them these exact values.
    """
    FaceGender(settings=settings)
    for name, value in settings.model_dump(mode="json").items():
        variable = f"FACEGENDER_{name.upper()}"
        if value is None:  # an unset optional setting: the environment has no spelling for None
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = value if isinstance(value, str) else json.dumps(value)


def serve(settings: Settings) -> None:
    """Check the models, then run uvicorn in this process with ``settings.workers`` workers until stopped.

    ``facegender serve`` does the same in a fresh, lighter process (see :mod:`facegender.server.supervisor`).
    """
    prepare_workers(settings)
    supervisor.run(host=settings.host, port=settings.port, workers=settings.workers)
