"""Turn what a user sends (a path, encoded bytes, a binary file, a PIL image or an array) into an upright RGB
array."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, TypeAlias, TypeGuard

import numpy as np
import simplejpeg
from numpy.typing import NDArray
from PIL import ExifTags, Image, UnidentifiedImageError

from facegender.errors import ImageTooLargeError, InvalidImageError, UnsupportedFormatError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "DecodedImage",
    "ImageSource",
    "MinScale",
    "RGBImage",
    "decode_image",
    "is_one_image",
    "load_image",
]

RGBImage: TypeAlias = NDArray[np.uint8]
"""An ``(height, width, 3)`` uint8 array in RGB order."""


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An upright RGB image that may have been decoded at a reduced scale.

    ``width`` and ``height`` are the full size of the upright image, the size that boxes are reported in;
    ``pixels`` may be smaller (JPEG decoding at 1/2, 1/4 or 1/8 scale). Where they are, ``source`` keeps the
    encoded image, so that it can be decoded again at a finer scale.
    """

    pixels: RGBImage
    width: int
    height: int
    source: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def factor_x(self) -> float:
        """Full-size pixels per decoded pixel, horizontally."""
        return self.width / int(self.pixels.shape[1])

    @property
    def factor_y(self) -> float:
        """Full-size pixels per decoded pixel, vertically."""
        return self.height / int(self.pixels.shape[0])

    @property
    def downscale(self) -> float:
        """Full-size pixels per decoded pixel, the larger factor: the ``downscale`` that detection and chips take."""
        return max(self.factor_x, self.factor_y)


ImageSource: TypeAlias = (
    str
    | os.PathLike[str]
    | bytes
    | bytearray
    | memoryview
    | IO[bytes]
    | Image.Image
    | NDArray[np.generic]
    | DecodedImage
)

MinScale: TypeAlias = Callable[[int, int], float]
"""Given an image's full width and height, the smallest scale (decoded / full size) that is good enough."""

DEFAULT_MAX_PIXELS: Final = 40_000_000
SUPPORTED_FORMATS: Final = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})
_DRAFT_FORMATS: Final = frozenset({"JPEG", "MPO"})
_SIDE_SWAPPING: Final = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the image by 90 degrees
# What each EXIF orientation asks of the stored pixels to show them upright (as Pillow's ImageOps.exif_transpose).
_ORIENTED: Final[dict[int, Callable[[RGBImage], RGBImage]]] = {
    1: lambda pixels: pixels,
    2: lambda pixels: pixels[:, ::-1],
    3: lambda pixels: pixels[::-1, ::-1],
    4: lambda pixels: pixels[::-1],
    5: lambda pixels: pixels.transpose(1, 0, 2),
    6: lambda pixels: np.rot90(pixels, -1),
    7: lambda pixels: pixels[::-1, ::-1].transpose(1, 0, 2),
    8: lambda pixels: np.rot90(pixels),
}

# Recognised but refused: name them so the user learns what they sent rather than "not an image".
_KNOWN_UNSUPPORTED: Final = (
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "SVG/XML"),
    (b"8BPS", "PSD"),
)
_HEIF_BRANDS: Final = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> RGBImage:
    """Decode ``source`` into an upright ``(H, W, 3)`` uint8 RGB array at full size.

    EXIF orientation is applied; greyscale, palette, 16-bit, CMYK and alpha images are converted
    (transparent areas become white); animated GIFs and multi-page TIFFs give their first frame.

    Raises:
        InvalidImageError: empty, truncated or non-image input.
        UnsupportedFormatError: a recognised but unsupported format (HEIC, SVG, PDF, ...).
        ImageTooLargeError: more than ``max_pixels`` pixels; checked from the header, before decoding.
        TypeError: ``source`` is none of the kinds that :data:`ImageSource` lists.
    """
    if isinstance(source, DecodedImage):
        if source.pixels.shape[:2] != (source.height, source.width):
            raise ValueError("this image was decoded at a reduced scale; decode it again for full size")
        return source.pixels
    return decode_image(source, max_pixels=max_pixels).pixels


def is_one_image(value: object) -> bool:
    """Whether ``value`` is a single image of a kind that is also a sequence (a path, bytes, one image's array,
    a file object), or a PIL image: a batch of images must not be taken apart into its characters, bytes, rows or
    lines. A 4-d array is a batch."""
    if isinstance(value, np.ndarray):
        return value.ndim < 4
    if _is_file(value):
        return True
    return isinstance(value, str | bytes | bytearray | memoryview | os.PathLike | Image.Image | DecodedImage)


def decode_image(
    source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_scale: MinScale | None = None
) -> DecodedImage:
    """Decode ``source`` like :func:`load_image`, at a reduced scale where ``min_scale`` allows it.

    A JPEG is decoded at 1/2, 1/4 or 1/8 of its size (its DCT is scaled, so this is also faster and
    smoother than decoding in full and shrinking) when that scale is still at least
    ``min_scale(width, height)``; other formats, arrays and PIL images come at full size. A
    :class:`DecodedImage` is returned as it is.

    Raises:
        The errors of :func:`load_image`.
    """
    if isinstance(source, DecodedImage):
        return source
    if isinstance(source, np.ndarray):
        return _full_size(_from_array(source, max_pixels=max_pixels))
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, max_pixels)
        _load(source)  # a lazily opened image may still be truncated or corrupt
        return _full_size(_upright(_flatten_modes(source), _orientation(source)))
    data = _read_bytes(source)
    image = _open(data, max_pixels=max_pixels)
    width, height = image.size
    reduction = 1
    if min_scale is not None and image.format in _DRAFT_FORMATS:
        scale = min_scale(width, height)
        reduction = next((r for r in (8, 4, 2) if r * scale <= 1), 1)
    pixels = _decoded_jpeg(data, image, reduction=reduction)
    if pixels is None:
        if reduction > 1:
            image.draft(None, (width // reduction, height // reduction))
        _load(image)
        pixels = _flatten_modes(image)
    orientation = _orientation(image)  # once loaded: Pillow turns a TIFF upright as it loads it
    pixels = _upright(pixels, orientation)
    if orientation in _SIDE_SWAPPING:
        width, height = height, width
    reduced = pixels.shape[:2] != (height, width)
    return DecodedImage(pixels=pixels, width=width, height=height, source=data if reduced else None)


def _decoded_jpeg(data: bytes, image: Image.Image, *, reduction: int) -> RGBImage | None:
    """A colour JPEG decoded by libjpeg-turbo straight into an RGB array at ``1/reduction`` scale; ``None``
    for any other image, or where libjpeg-turbo finds any damage (Pillow then decodes it, or refuses it, as
    it would have).

    The very same pixels as Pillow's decoding, which keeps four bytes per pixel and copies them out: 1.2
    instead of 1.95 ms per portrait (docs/performance.md).
    """
    if image.format not in _DRAFT_FORMATS or image.mode != "RGB":
        return None
    width, height = -(-image.width // reduction), -(-image.height // reduction)  # as libjpeg scales: rounded up
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=width, min_height=height, strict=True)
    except ValueError:
        return None
    return pixels if pixels.shape == (height, width, 3) else None


def _full_size(pixels: RGBImage) -> DecodedImage:
    return DecodedImage(pixels=pixels, width=pixels.shape[1], height=pixels.shape[0])


def _is_file(value: object) -> TypeGuard[IO[bytes]]:
    """Whether ``value`` reads as one file: a file opened in binary mode, a BytesIO, an upload's stream."""
    return callable(getattr(value, "read", None))


def _read_bytes(source: object) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif _is_file(source):
        data = source.read()
        if not isinstance(data, bytes):
            raise TypeError(f"a file object must give bytes (open it in binary mode), not {type(data).__name__}")
    elif isinstance(source, str | os.PathLike):
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
    else:
        raise TypeError(
            "an image is a path, bytes, a binary file object, a PIL image or a numpy array, "
            f"not {type(source).__name__}"
        )
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
    return image


def _load(image: Image.Image) -> None:
    try:
        image.load()
    except Exception as exc:
        raise InvalidImageError(f"the image data is truncated or corrupt ({type(exc).__name__})") from None


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


def _orientation(image: Image.Image) -> int:
    """The image's EXIF orientation, 1 (as it is) where it has none or a corrupt one: corrupt EXIF must not
    cost the user the picture itself."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return 1
    return orientation if orientation in _ORIENTED else 1


def _upright(pixels: RGBImage, orientation: int) -> RGBImage:
    """``pixels`` turned as their EXIF ``orientation`` asks; themselves where it asks nothing."""
    return pixels if orientation == 1 else np.ascontiguousarray(_ORIENTED[orientation](pixels))


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
    rgb = image if image.mode == "RGB" else image.convert("RGB")
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
