"""Image-file makers shared by the decode and pipeline-format tests: encoders, hand-written PNGs, EXIF orientation."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

RGB = NDArray[np.uint8]

# What each EXIF orientation means: the displayed (upright) image is this function of the stored pixels
# (EXIF 2.3, tag 0x0112). The tests store the inverse, so that the upright result is the original.
STORED_FROM_UPRIGHT: dict[int, Callable[[RGB], RGB]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored horizontally
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored vertically
    5: lambda a: a.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, 1),  # shown after a 90° clockwise turn, so stored a quarter turn anticlockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirrored along the anti-diagonal
    8: lambda a: np.rot90(a, -1),  # shown after a 90° anticlockwise turn
}


def save(image: Image.Image, fmt: str, **options: object) -> bytes:
    """The bytes of ``image`` saved by Pillow as ``fmt`` with the given save options."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload and CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_by_hand(width: int, height: int, *, bit_depth: int, colour_type: int, idat: bytes, plte: bytes = b"") -> bytes:
    """A PNG assembled from its header fields, an optional palette and one already-compressed IDAT payload."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    chunks = png_chunk(b"IHDR", header)
    if plte:
        chunks += png_chunk(b"PLTE", plte)
    return b"\x89PNG\r\n\x1a\n" + chunks + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png16(rgb: RGB, *, alpha: bool = False) -> bytes:
    """A 16-bit-per-channel RGB(A) PNG, written by hand since Pillow cannot write one."""
    samples = rgb.astype(">u2") * 257
    if alpha:
        samples = np.dstack([samples, np.full(rgb.shape[:2], 65535, dtype=">u2")])
    rows = samples.reshape(rgb.shape[0], -1).view(np.uint8)
    raw = np.hstack([np.zeros((rgb.shape[0], 1), np.uint8), rows]).tobytes()  # filter byte 0 per row
    return png_by_hand(rgb.shape[1], rgb.shape[0], bit_depth=16, colour_type=6 if alpha else 2, idat=zlib.compress(raw))


def grey16_png(rgb: RGB) -> bytes:
    """A 16-bit greyscale (``I;16``) PNG of the luma of ``rgb``."""
    luma = np.asarray(Image.fromarray(rgb).convert("L")).astype(np.uint16) * 257
    image = Image.fromarray(luma)
    assert image.mode == "I;16"
    return save(image, "PNG")


def red(rgb: RGB) -> Image.Image:
    """A solid red RGB image the size of ``rgb``, used as the second frame of multi-frame files."""
    return Image.new("RGB", (rgb.shape[1], rgb.shape[0]), (255, 0, 0))


def animated_gif(rgb: RGB, *, loop: int | None = 0) -> bytes:
    """A two-frame animated GIF of ``rgb`` then solid red; ``loop=None`` leaves out the loop count."""
    options: dict[str, object] = {} if loop is None else {"loop": loop}
    return save(Image.fromarray(rgb), "GIF", save_all=True, append_images=[red(rgb)], duration=100, **options)


def multipage_tiff(rgb: RGB) -> bytes:
    """A two-page TIFF of ``rgb`` then solid red."""
    return save(Image.fromarray(rgb), "TIFF", save_all=True, append_images=[red(rgb)])


def with_orientation(upright: RGB, orientation: int, fmt: str, **options: object) -> bytes:
    """``upright`` stored as ``fmt`` with the given EXIF orientation, so that it displays as ``upright``."""
    stored = np.ascontiguousarray(STORED_FROM_UPRIGHT[orientation](upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(Image.fromarray(stored), fmt, exif=exif, **options)


def upright_rgb(path: Path) -> RGB:
    """The upright RGB pixels of the image file at ``path``, decoded by Pillow alone."""
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image) or image
        return np.ascontiguousarray(np.asarray(upright.convert("RGB")))
