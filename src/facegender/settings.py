"""All settings in one place: environment variables ``FACEGENDER_*``, validated at start-up."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Final

from pydantic import Field, StringConstraints
from pydantic_settings import BaseSettings, SettingsConfigDict

from facegender.classify import DEFAULT_CLASSIFIER_PATH
from facegender.decode import DEFAULT_MAX_PIXELS
from facegender.detect import DEFAULT_DETECTOR_PATH
from facegender.orientation import DEFAULT_ORIENTATION_PATH

__all__ = ["DEFAULT_CONCURRENT_INFERENCES", "Settings"]

DEFAULT_CONCURRENT_INFERENCES: Final = 2


class Settings(BaseSettings):
    """Library and service settings; every field can be set as ``FACEGENDER_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FACEGENDER_", frozen=True, extra="forbid")

    classifier_path: Path = Field(default=DEFAULT_CLASSIFIER_PATH, description="Gender model (ONNX).")
    detector_path: Path = Field(default=DEFAULT_DETECTOR_PATH, description="Face detector model (ONNX).")
    orientation_path: Path = Field(
        default=DEFAULT_ORIENTATION_PATH, description="Orientation model (ONNX), used with turn_faces_upright."
    )
    detection_threshold: float = Field(default=0.5, gt=0.0, lt=1.0, description="Minimum face detection score.")
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS, ge=64, le=89_000_000, description="Refuse images with more pixels than this."
    )
    threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description=(
            "onnxruntime threads per model; 0: the detector's passes over a photo side by side, one thread each"
            " (in turn while other requests wait), and for the classifier onnxruntime's choice, or one where each"
            " server worker has at most one CPU core."
        ),
    )
    min_face_size: int | None = Field(
        default=None,
        ge=8,
        description="Also search finer scales for faces down to this many pixels (slower; default: 1/8 of short side).",
    )
    turn_faces_upright: bool = Field(
        default=False,
        description=(
            "For photos that lost their orientation: look again, four ways, at each face found less surely than"
            " 0.86, read less surely than 0.97 and not found upright by the orientation model, and read it again"
            " turned upright where the detector finds it surer so (four more detector passes per such face)."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address the service listens on.")
    port: int = Field(default=3001, ge=1, le=65535, description="Port the service listens on.")
    workers: int = Field(default=1, ge=1, le=64, description="Server worker processes.")
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Largest accepted upload, in bytes.")
    max_batch_files: int = Field(default=16, ge=1, le=1000, description="Most files in one batch request.")
    request_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="Answer every request within this many seconds: 408 while the upload is arriving, else 503.",
    )
    cors_origins: list[str] = Field(default=["*"], description="Origins allowed to call the API from a browser.")
    api_keys: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default=[],
        repr=False,
        description="Keys that may call the API (Bearer or X-API-Key header); empty turns authentication off.",
    )
    log_json: bool = Field(default=False, description="Write the access log as one JSON object per line on stderr.")
    max_concurrent_inferences: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description=(
            f"Inferences that run at once in each worker process (default: {DEFAULT_CONCURRENT_INFERENCES}, or 1"
            " where the workers outnumber half the CPU cores)."
        ),
    )
    max_queue: int = Field(
        default=32, ge=0, le=10_000, description="Requests that may wait for an inference slot; more get 503."
    )

    @property
    def concurrent_inferences(self) -> int:
        """Inferences at once per worker: ``max_concurrent_inferences`` where set, else two, or one where the
        workers outnumber half the CPU cores. Two workers on two cores, one inference each, peaked about 30 MiB
        lower under load than with two each, at the same requests/s (``python -m benchmarks.load --workers 2``)."""
        if self.max_concurrent_inferences is not None:
            return self.max_concurrent_inferences
        return max(1, min(DEFAULT_CONCURRENT_INFERENCES, _usable_cores() // self.workers))

    @property
    def classifier_threads(self) -> int:
        """The classifier's onnxruntime threads: ``threads`` where set, else 1 where each worker has at most one
        core (the workers fill the cores, and threads within a photo would only contend), else 0 (its choice)."""
        if self.threads or _usable_cores() // self.workers > 1:
            return self.threads
        return 1


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
