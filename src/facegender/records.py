"""The JSON record of one photo, shared by ``facegender predict --json`` and ``facegender batch``.

A record is ``{"file", "faces": [...], "error": null | {"code", "message"}, "model"}``; each face is
``{"box": {"left", "top", "width", "height"}, "class", "label", "probability", "probabilities",
"detection_score", "model_version", "head_turn"}``, largest face first. A readable photo without a face has no faces
and the error ``no_face``, as the HTTP service answers it.

``label`` is the class index (female 0, male 1) as in the HTTP contract; ``predict --json`` asks for
``labels="name"`` because its first release printed the class name there.

:func:`flat_row` flattens a record to one row (the largest face, a face count and the error) for CSV and
Parquet.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Final, Literal

from facegender.errors import FaceGenderError, NoFaceError
from facegender.results import Face

__all__ = ["FLAT_COLUMNS", "NO_FACE_MESSAGE", "face_record", "flat_row", "photo_record"]

NO_FACE_MESSAGE: Final = "no face found"

FLAT_COLUMNS: Final = (
    "file",
    "size",
    "mtime",
    "faces",
    "class",
    "label",
    "probability",
    "detection_score",
    "box_left",
    "box_top",
    "box_width",
    "box_height",
    "error_code",
    "error_message",
    "model",
)
"""Columns of :func:`flat_row`, in order."""


def face_record(face: Face, *, labels: Literal["index", "name"] = "index") -> dict[str, Any]:
    """One face as JSON-ready data; ``labels`` picks what ``label`` holds: the class index or name."""
    return {
        "box": asdict(face.box),
        "class": face.label,
        "label": face.label_index if labels == "index" else face.label,
        "probability": face.probability,
        "probabilities": dict(face.probabilities),
        "detection_score": face.detection_score,
        "model_version": face.model_version,
        "head_turn": face.head_turn,
    }


def photo_record(
    file: str,
    outcome: list[Face] | FaceGenderError,
    *,
    model_version: str,
    labels: Literal["index", "name"] = "index",
) -> dict[str, Any]:
    """The record of one photo from what :meth:`FaceGender.predict_batch` gave for it."""
    if isinstance(outcome, FaceGenderError):
        error: dict[str, str] | None = {"code": outcome.code, "message": outcome.message}
        faces: list[dict[str, Any]] = []
    else:
        faces = [face_record(face, labels=labels) for face in outcome]
        error = None if faces else {"code": NoFaceError.code, "message": NO_FACE_MESSAGE}
    return {"file": file, "faces": faces, "error": error, "model": model_version}


def flat_row(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as one row of :data:`FLAT_COLUMNS`: the largest face, the face count and the error.

    Face columns are ``None`` when there is no face; ``size`` and ``mtime`` are ``None`` when the record
    has none (records of ``predict``).
    """
    faces = record["faces"]
    largest = faces[0] if faces else None  # records list faces largest first
    box = largest["box"] if largest else {}
    error = record["error"] or {}
    return {
        "file": record["file"],
        "size": record.get("size"),
        "mtime": record.get("mtime"),
        "faces": len(faces),
        "class": largest["class"] if largest else None,
        "label": largest["label"] if largest else None,
        "probability": largest["probability"] if largest else None,
        "detection_score": largest["detection_score"] if largest else None,
        "box_left": box.get("left"),
        "box_top": box.get("top"),
        "box_width": box.get("width"),
        "box_height": box.get("height"),
        "error_code": error.get("code"),
        "error_message": error.get("message"),
        "model": record["model"],
    }
