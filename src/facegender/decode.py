"""Turn what a user sends (a path, encoded bytes, a PIL image or an array) into an upright RGB array."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Final, TypeAlias

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from facegender.errors import ImageTooLargeError, InvalidImageError, UnsupportedFormatError

__all__ = ["DEFAULT_MAX_PIXELS", "SUPPORTED_FORMATS", "ImageSource", "RGBImage", "load_image"]

RGBImage: TypeAlias = NDArray[np.uint8]
"""An ``(height, width, 3)`` uint8 array in RGB order."""

ImageSource: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | NDArray[np.generic]

DEFAULT_MAX_PIXELS: Final = 40_000_000
SUPPORTED_FORMATS: Final = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})

# Recognised but refused: name them so the user learns what they sent rather than "not an image".
_KNOWN_UNSUPPORTED: Final = (
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "SVG/XML"),
    (b"8BPS", "PSD"),
)
_HEIF_BRANDS: Final = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> RGBImage:
    """Decode ``source`` into an upright ``(H, W, 3)`` uint8 RGB array.

    EXIF orientation is applied; greyscale, palette, 16-bit, CMYK and alpha images are converted
    (transparent areas become white); animated GIFs and multi-page TIFFs give their first frame.

    Raises:
        InvalidImageError: empty, truncated or non-image input.
        UnsupportedFormatError: a recognised but unsupported format (HEIC, SVG, PDF, ...).
        ImageTooLargeError: more than ``max_pixels`` pixels; checked from the header, before decoding.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels=max_pixels)
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, max_pixels)
        try:
            source.load()  # a lazily opened image may still be truncated or corrupt
        except Exception as exc:
            raise InvalidImageError(f"the image data is truncated or corrupt ({type(exc).__name__})") from None
        return _to_rgb_array(source)
    data = _read_bytes(source)
    return _to_rgb_array(_open(data, max_pixels=max_pixels))


def _read_bytes(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidImageError(f"file not found: {path.name}") from None
        except IsADirectoryError:
            raise InvalidImageError(f"not a file: {path.name}") from None
        except OSError as exc:
            raise InvalidImageError(f"cannot read {path.name}: {exc.strerror}") from None
        except ValueError:  # e.g. an embedded NUL byte in the path
            raise InvalidImageError("the path is not a valid file name") from None
    if not data:
        raise InvalidImageError("the image is empty (0 bytes)")
    return data


def _open(data: bytes, *, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError("the image has too many pixels to decode safely") from None
    except UnidentifiedImageError:
        raise _unidentified(data) from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise InvalidImageError(f"the image header is corrupt ({type(exc).__name__})") from None
    if image.format not in SUPPORTED_FORMATS:
        raise UnsupportedFormatError(f"{image.format} images are not supported; send JPEG, PNG, WebP, BMP, GIF or TIFF")
    _check_pixels(image.width, image.height, max_pixels)
    try:
        image.load()
    except Exception as exc:
        raise InvalidImageError(f"the image data is truncated or corrupt ({type(exc).__name__})") from None
    return image


def _unidentified(data: bytes) -> InvalidImageError:
    head = data[:256].lstrip()
    for magic, name in _KNOWN_UNSUPPORTED:
        if head.startswith(magic):
            return UnsupportedFormatError(f"{name} files are not supported; send JPEG, PNG, WebP, BMP, GIF or TIFF")
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return UnsupportedFormatError("HEIC/AVIF images are not supported; send JPEG, PNG, WebP, BMP, GIF or TIFF")
    return InvalidImageError("the data is not a recognisable image")


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise InvalidImageError("the image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"the image is {width}x{height}, more than the limit of {max_pixels:,} pixels")


def _to_rgb_array(image: Image.Image) -> RGBImage:
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # corrupt EXIF must not cost the user the picture itself
        upright = image
    if upright is None:
        upright = image
    return _flatten_modes(upright)


def _flatten_modes(image: Image.Image) -> RGBImage:
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = Image.fromarray(_to_uint8(np.asarray(image)), mode="L")
    elif (mode == "P" and "transparency" in image.info) or mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    rgb = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def _to_uint8(values: NDArray[np.generic]) -> NDArray[np.uint8]:
    """Scale 16-bit, 32-bit or float greyscale into 0..255 rather than clipping it."""
    array = values.astype(np.float64)
    array[~np.isfinite(array)] = 0.0  # one NaN would otherwise poison the scale and the cast
    if np.issubdtype(values.dtype, np.floating):
        top = 1.0 if array.max(initial=0.0) <= 1.0 else 255.0
    else:
        top = 65535.0 if array.max(initial=0.0) > 255 else 255.0
    return np.clip(array * (255.0 / top), 0, 255).round().astype(np.uint8)


def _from_array(array: NDArray[np.generic], *, max_pixels: int) -> RGBImage:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InvalidImageError(f"an image array must be HxW, HxWx3 or HxWx4, not {array.shape}")
    _check_pixels(array.shape[1], array.shape[0], max_pixels)
    if array.dtype != np.uint8:
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise InvalidImageError(f"unsupported array dtype {array.dtype}")
        array = _to_uint8(array)
    if array.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if array.shape[2] == 4:
        return _flatten_modes(Image.fromarray(np.ascontiguousarray(array), mode="RGBA"))
    return np.ascontiguousarray(array)
