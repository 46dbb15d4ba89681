"""The same real portrait, in every supported format and EXIF orientation, gives the same face."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageOps

from facegender import Box, Face, FaceGender

RGB = NDArray[np.uint8]


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png16_rgb(rgb: RGB) -> bytes:
    """A 16-bit-per-channel RGB PNG, written by hand since Pillow cannot write one."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = (rgb.astype(">u2") * 257).reshape(rgb.shape[0], -1).view(np.uint8)
    raw = np.hstack([np.zeros((rgb.shape[0], 1), np.uint8), rows]).tobytes()
    header = struct.pack(">IIBBBBB", rgb.shape[1], rgb.shape[0], 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _second_frame(rgb: RGB) -> list[Image.Image]:
    return [Image.new("RGB", (rgb.shape[1], rgb.shape[0]), (255, 0, 0))]


def _image(rgb: RGB) -> Image.Image:
    return Image.fromarray(rgb)


FORMATS: dict[str, Callable[[RGB], bytes]] = {
    "jpeg": lambda a: _save(_image(a), "JPEG", quality=95),
    "png": lambda a: _save(_image(a), "PNG"),
    "png-16bit-grey": lambda a: _save(
        Image.fromarray(np.asarray(_image(a).convert("L")).astype(np.uint16) * 257), "PNG"
    ),
    "png-16bit-rgb": _png16_rgb,
    "png-palette": lambda a: _save(_image(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"),
    "png-rgba": lambda a: _save(_image(a).convert("RGBA"), "PNG"),
    "webp": lambda a: _save(_image(a), "WEBP", quality=90),
    "bmp": lambda a: _save(_image(a), "BMP"),
    "gif": lambda a: _save(_image(a), "GIF"),
    "gif-animated": lambda a: _save(_image(a), "GIF", save_all=True, append_images=_second_frame(a), duration=100),
    "tiff": lambda a: _save(_image(a), "TIFF"),
    "tiff-multipage": lambda a: _save(_image(a), "TIFF", save_all=True, append_images=_second_frame(a)),
    "jpeg-grey": lambda a: _save(_image(a).convert("L"), "JPEG", quality=95),
    "jpeg-cmyk": lambda a: _save(_image(a).convert("CMYK"), "JPEG", quality=95),
}

# The stored pixels for each EXIF orientation, so that the upright image is the original (EXIF 2.3, tag 0x0112).
_STORED_FROM_UPRIGHT: dict[int, Callable[[RGB], RGB]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, -1),
}


def _jpeg_with_orientation(upright: RGB, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = np.ascontiguousarray(_STORED_FROM_UPRIGHT[orientation](upright))
    return _save(Image.fromarray(stored), "JPEG", quality=95, exif=exif)


@pytest.fixture(scope="module")
def original(portrait_path: Path) -> RGB:
    with Image.open(portrait_path) as image:
        upright = ImageOps.exif_transpose(image) or image
        return np.ascontiguousarray(np.asarray(upright.convert("RGB")))


@pytest.fixture(scope="module")
def baseline(face_gender: FaceGender, portrait_path: Path) -> Face:
    """The largest face the pipeline finds in the original file."""
    faces = face_gender.predict(portrait_path)
    assert faces, "the fixed portrait must have a face"
    return faces[0]


def _largest(faces: list[Face]) -> Face:
    assert faces, "no face found"
    largest = max(faces, key=lambda face: face.box.area)
    assert faces[0].box.area == largest.box.area, "faces must come largest first"
    return largest


def _same_box(box: Box, reference: Box, tolerance: float = 0.10) -> bool:
    """Every edge of ``box`` within ``tolerance`` of the reference box's size from the reference edge."""
    edges = (box.left, box.top, box.left + box.width, box.top + box.height)
    expected = (reference.left, reference.top, reference.left + reference.width, reference.top + reference.height)
    sides = (reference.width, reference.height, reference.width, reference.height)
    return all(abs(got - want) <= tolerance * side for got, want, side in zip(edges, expected, sides, strict=True))


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_gives_the_same_face(name: str, original: RGB, baseline: Face, face_gender: FaceGender) -> None:
    face = _largest(face_gender.predict(FORMATS[name](original)))
    assert face.label == baseline.label
    assert _same_box(face.box, baseline.box), (face.box, baseline.box)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_gives_the_same_face(
    orientation: int, original: RGB, baseline: Face, face_gender: FaceGender
) -> None:
    face = _largest(face_gender.predict(_jpeg_with_orientation(original, orientation)))
    assert face.label == baseline.label
    # Upright coordinates. Tighter than 10%: mirroring this nearly centred face moves its box by only ~8.5%.
    assert _same_box(face.box, baseline.box, tolerance=0.05), (face.box, baseline.box)


def test_a_sideways_file_without_its_exif_tag_is_not_upright(
    original: RGB, baseline: Face, face_gender: FaceGender
) -> None:
    """Guards the test above: the stored pixels alone put the face somewhere else, so EXIF is what matters."""
    sideways = _save(Image.fromarray(np.ascontiguousarray(_STORED_FROM_UPRIGHT[6](original))), "JPEG", quality=95)
    faces = face_gender.predict(sideways)
    assert not faces or not _same_box(faces[0].box, baseline.box)
