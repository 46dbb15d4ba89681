"""Unit tests of ``facegender.decode.load_image``: formats, EXIF orientation, inputs and refusals."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from image_files import (
    RGB,
    STORED_FROM_UPRIGHT,
    animated_gif,
    grey16_png,
    multipage_tiff,
    png16,
    png_by_hand,
    red,
    save,
    upright_rgb,
    with_orientation,
)
from numpy.typing import NDArray
from PIL import Image, ImageFile, ImageOps, features

from facegender import decode as decode_module
from facegender.decode import DecodedImage, decode_image, load_image
from facegender.errors import FaceGenderError, ImageTooLargeError, InvalidImageError, UnsupportedFormatError

# --------------------------------------------------------------------------------------------- helpers


def _grey(rgb: RGB) -> RGB:
    """The greyscale of ``rgb`` as the decoder returns it: three equal channels."""
    luma = np.asarray(Image.fromarray(rgb).convert("L"))
    return np.repeat(luma[:, :, None], 3, axis=2)


def _mean_abs_diff(a: RGB, b: RGB) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# name -> (encode the upright RGB original, reference the decode must match, mean-abs-diff bound; 0 = exact)
Encoder = Callable[[RGB], bytes]
FORMATS: dict[str, tuple[Encoder, Callable[[RGB], RGB], float]] = {
    "jpeg": (lambda a: save(Image.fromarray(a), "JPEG", quality=95), lambda a: a, 3.0),
    "png": (lambda a: save(Image.fromarray(a), "PNG"), lambda a: a, 0.0),
    "png-16bit-grey": (grey16_png, _grey, 0.0),
    "png-16bit-rgb": (png16, lambda a: a, 0.0),
    "png-16bit-rgba": (lambda a: png16(a, alpha=True), lambda a: a, 0.0),
    "png-palette": (
        lambda a: save(Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"),
        lambda a: a,
        6.0,
    ),
    "png-rgba": (lambda a: save(Image.fromarray(a).convert("RGBA"), "PNG"), lambda a: a, 0.0),
    "webp": (lambda a: save(Image.fromarray(a), "WEBP", quality=90), lambda a: a, 4.0),
    "webp-lossless": (lambda a: save(Image.fromarray(a), "WEBP", lossless=True), lambda a: a, 0.0),
    "bmp": (lambda a: save(Image.fromarray(a), "BMP"), lambda a: a, 0.0),
    "gif": (lambda a: save(Image.fromarray(a), "GIF"), lambda a: a, 6.0),
    "gif-animated": (animated_gif, lambda a: a, 6.0),
    "tiff": (lambda a: save(Image.fromarray(a), "TIFF"), lambda a: a, 0.0),
    "tiff-deflate": (lambda a: save(Image.fromarray(a), "TIFF", compression="tiff_adobe_deflate"), lambda a: a, 0.0),
    "tiff-multipage": (multipage_tiff, lambda a: a, 0.0),
    "jpeg-grey": (lambda a: save(Image.fromarray(a).convert("L"), "JPEG", quality=95), _grey, 3.0),
    "jpeg-cmyk": (lambda a: save(Image.fromarray(a).convert("CMYK"), "JPEG", quality=95), lambda a: a, 4.0),
    "mpo": (lambda a: save(Image.fromarray(a), "MPO", quality=95), lambda a: a, 3.0),
}


def _jpeg_with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """``jpeg`` with an extra APP1 segment holding ``payload`` straight after SOI."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _patch_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrite the frame header (SOFn) of ``jpeg`` to claim ``width`` x ``height``."""
    data = bytearray(jpeg)
    index = 2
    while index < len(data):
        marker = data[index + 1]
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            data[index + 5 : index + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        index += 2 + length
    raise AssertionError("no SOF marker")


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def original(portrait_path: Path) -> RGB:
    """The upright RGB pixels of the real portrait, decoded by Pillow alone."""
    return upright_rgb(portrait_path)


@pytest.fixture(scope="module")
def portrait_jpeg(original: RGB) -> bytes:
    return save(Image.fromarray(original), "JPEG", quality=90)


@pytest.fixture(scope="module")
def portrait_png(original: RGB) -> bytes:
    return save(Image.fromarray(original), "PNG")


@pytest.fixture(scope="module")
def small_jpeg(original: RGB) -> bytes:
    """A small JPEG of the portrait with an EXIF orientation, so that mutations reach every header."""
    small = Image.fromarray(original).resize((48, 60))
    exif = Image.Exif()
    exif[0x0112] = 6
    return save(small, "JPEG", quality=85, exif=exif)


@pytest.fixture(scope="module")
def small_png(original: RGB) -> bytes:
    return save(Image.fromarray(original).resize((48, 60)).convert("P", palette=Image.Palette.ADAPTIVE), "PNG")


# --------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_supported_format_round_trips(name: str, original: RGB) -> None:
    encode, reference, bound = FORMATS[name]
    decoded = load_image(encode(original))
    expected = reference(original)
    assert decoded.dtype == np.uint8
    assert decoded.shape == original.shape
    assert decoded.flags.c_contiguous
    if bound == 0:
        np.testing.assert_array_equal(decoded, expected)
    else:
        assert _mean_abs_diff(decoded, expected) <= bound


def testanimated_gif_andmultipage_tiff_give_the_first_frame(original: RGB) -> None:
    for data in (animated_gif(original), multipage_tiff(original)):
        with Image.open(io.BytesIO(data)) as image:
            assert getattr(image, "n_frames", 1) == 2  # the second frame exists and is solid red
        decoded = load_image(data)
        assert _mean_abs_diff(decoded, original) <= 6.0
        assert _mean_abs_diff(decoded, np.asarray(red(original))) > 50


def test_transparency_becomes_white(original: RGB) -> None:
    height, width = original.shape[:2]
    alpha = np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))
    decoded = load_image(save(Image.fromarray(np.dstack([original, alpha])), "PNG"))
    weight = alpha[:, :, None] / 255.0
    expected = original * weight + 255.0 * (1 - weight)
    assert np.abs(decoded - expected).max() <= 1.0
    assert (decoded[:, 0] == 255).all()  # fully transparent column

    grey_alpha = Image.fromarray(np.dstack([_grey(original)[:, :, 0], np.zeros_like(alpha)]), mode="LA")
    assert (load_image(save(grey_alpha, "PNG")) == 255).all()

    palette = Image.fromarray(original).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    index = np.asarray(palette)[0, 0]
    decoded = load_image(save(palette, "PNG", transparency=int(index)))
    transparent = np.asarray(palette) == index
    assert (decoded[transparent] == 255).all()
    assert not (decoded[~transparent] == 255).all()


def test_one_pixel_images_decode(tmp_path: Path) -> None:
    pixel = Image.new("RGB", (1, 1), (10, 200, 30))
    for fmt in ("PNG", "BMP", "TIFF", "WEBP"):
        decoded = load_image(save(pixel, fmt, **({"lossless": True} if fmt == "WEBP" else {})))
        np.testing.assert_array_equal(decoded, [[[10, 200, 30]]])
    assert load_image(save(pixel, "JPEG")).shape == (1, 1, 3)
    assert load_image(save(pixel, "GIF")).shape == (1, 1, 3)
    path = tmp_path / "one.png"
    pixel.save(path)
    np.testing.assert_array_equal(load_image(path), [[[10, 200, 30]]])
    np.testing.assert_array_equal(load_image(str(path)), [[[10, 200, 30]]])


# --------------------------------------------------------------------------------------------- EXIF


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(
    ("fmt", "options", "bound"),
    [("PNG", {}, 0.0), ("WEBP", {"lossless": True}, 0.0), ("TIFF", {}, 0.0), ("JPEG", {"quality": 95}, 3.0)],
    ids=["png", "webp-lossless", "tiff", "jpeg"],
)
def test_exif_orientation_gives_the_upright_image(
    orientation: int, fmt: str, options: dict[str, object], bound: float, original: RGB
) -> None:
    stored = STORED_FROM_UPRIGHT[orientation](original)
    assert orientation == 1 or stored.shape != original.shape or _mean_abs_diff(stored, original) > 10
    data = with_orientation(original, orientation, fmt, **options)
    with Image.open(io.BytesIO(data)) as image:
        assert image.getexif().get(0x0112) == orientation  # the tag really is in the file
    decoded = load_image(data)
    assert decoded.shape == original.shape
    if bound == 0:
        np.testing.assert_array_equal(decoded, original)
    else:
        assert _mean_abs_diff(decoded, original) <= bound


def test_exif_orientation_of_a_pil_image_and_a_16_bit_png(original: RGB) -> None:
    with Image.open(io.BytesIO(with_orientation(original, 6, "PNG"))) as image:
        np.testing.assert_array_equal(load_image(image), original)
    luma = _grey(original)[:, :, 0]
    exif = Image.Exif()
    exif[0x0112] = 8
    data = save(Image.fromarray(np.rot90(luma, -1).astype(np.uint16) * 257), "PNG", exif=exif)
    np.testing.assert_array_equal(load_image(data), _grey(original))


EXIF_PAYLOADS = {
    "garbage": b"Exif\x00\x00" + b"\xde\xad\xbe\xef" * 16,
    "truncated-ifd": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12",
    "bad-offset": b"Exif\x00\x00II*\x00\xff\xff\xff\x7f",
    "huge-count": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\xff\xff\xff\x7f\x06\x00\x00\x00",
    "orientation-0": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x00\x00\x00\x00",
    "orientation-9": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x09\x00\x00\x00",
    "orientation-wrong-type": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x02\x00\x04\x00\x00\x00abc\x00",
    "header-only": b"Exif\x00\x00",
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt EXIF it skips
@pytest.mark.parametrize("payload", list(EXIF_PAYLOADS.values()), ids=list(EXIF_PAYLOADS))
def test_corrupt_exif_does_not_fail_the_decode(payload: bytes, portrait_jpeg: bytes) -> None:
    decoded = load_image(_jpeg_with_app1(portrait_jpeg, payload))
    np.testing.assert_array_equal(decoded, load_image(portrait_jpeg))


# ------------------------------------------------------------------------- JPEG: libjpeg-turbo straight to RGB


def _pillow_alone(data: bytes, reduction: int) -> RGB:
    """``data`` decoded by Pillow at ``1/reduction`` scale and turned upright: the reference."""
    with Image.open(io.BytesIO(data)) as image:
        if reduction > 1:
            image.draft(None, (image.width // reduction, image.height // reduction))
        return np.asarray((ImageOps.exif_transpose(image) or image).convert("RGB"))


@pytest.mark.parametrize("reduction", [1, 2, 4, 8])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpegs_decode_to_pillow_s_very_pixels_at_every_scale_and_orientation(
    reduction: int, orientation: int, original: RGB
) -> None:
    data = with_orientation(original, orientation, "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as image:
        assert decode_module._decoded_jpeg(data, image, reduction=reduction) is not None  # libjpeg-turbo's way
    decoded = decode_image(data, min_scale=lambda width, height: 1 / reduction)
    np.testing.assert_array_equal(decoded.pixels, _pillow_alone(data, reduction))
    assert (decoded.height, decoded.width) == original.shape[:2]


def test_mpo_and_greyscale_jpegs_decode_to_pillow_s_pixels(original: RGB) -> None:
    mpo = save(Image.fromarray(original), "MPO", quality=90)
    grey = save(Image.fromarray(original).convert("L"), "JPEG", quality=90)
    cmyk = save(Image.fromarray(original).convert("CMYK"), "JPEG", quality=90)
    for data in (mpo, grey, cmyk):
        np.testing.assert_array_equal(
            decode_image(data, min_scale=lambda width, height: 0.5).pixels, _pillow_alone(data, 2)
        )


def test_a_jpeg_with_recoverable_damage_is_decoded_as_pillow_decodes_it(portrait_jpeg: bytes) -> None:
    # Stray bytes before a marker: libjpeg warns and goes on. Pillow decodes such a file; so does this.
    scan = portrait_jpeg.index(b"\xff\xda")
    damaged = portrait_jpeg[:scan] + b"\x00\x00\x00" + portrait_jpeg[scan:]
    with Image.open(io.BytesIO(damaged)) as image:
        assert decode_module._decoded_jpeg(damaged, image, reduction=1) is None  # refused by the strict way
    np.testing.assert_array_equal(load_image(damaged), _pillow_alone(damaged, 1))


# --------------------------------------------------------------------------------------------- refusals


def _corrupt_idat(png: bytes) -> bytes:
    start = png.index(b"IDAT")
    length = struct.unpack(">I", png[start - 4 : start])[0]
    middle = start + 4 + length // 2
    data = bytearray(png)
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    return bytes(data)


BAD_BYTES: dict[str, tuple[Callable[[bytes, bytes], bytes], type[FaceGenderError]]] = {
    "empty": (lambda jpeg, png: b"", InvalidImageError),
    "text": (lambda jpeg, png: b"hello, this is not an image\n" * 4, InvalidImageError),
    "html": (lambda jpeg, png: b"<!DOCTYPE html>\n<html><body><img src='x.jpg'></body></html>", InvalidImageError),
    "json": (lambda jpeg, png: b'{"image": "base64..."}', InvalidImageError),
    "truncated-jpeg": (lambda jpeg, png: jpeg[: len(jpeg) // 2], InvalidImageError),
    "truncated-png": (lambda jpeg, png: png[: len(png) // 2], InvalidImageError),
    "jpeg-header-only": (lambda jpeg, png: jpeg[:200], InvalidImageError),
    "png-signature-only": (lambda jpeg, png: png[:8], InvalidImageError),
    "corrupt-png-idat": (lambda jpeg, png: _corrupt_idat(png), InvalidImageError),
    "pdf": (
        lambda jpeg, png: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        UnsupportedFormatError,
    ),
    "svg": (
        lambda jpeg, png: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
        UnsupportedFormatError,
    ),
    "svg-with-xml-prolog": (
        lambda jpeg, png: b'  <?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
        UnsupportedFormatError,
    ),
    "heic": (lambda jpeg, png: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), UnsupportedFormatError),
    "heic-mif1": (
        lambda jpeg, png: b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic" + bytes(64),
        UnsupportedFormatError,
    ),
    "avif-like": (
        lambda jpeg, png: b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(64),
        UnsupportedFormatError,
    ),
    "psd": (lambda jpeg, png: b"8BPS\x00\x01" + bytes(64), UnsupportedFormatError),
    "ico": (lambda jpeg, png: save(Image.open(io.BytesIO(png)).resize((32, 32)), "ICO"), UnsupportedFormatError),
    "ppm": (lambda jpeg, png: save(Image.open(io.BytesIO(png)), "PPM"), UnsupportedFormatError),
}


@pytest.mark.parametrize("name", list(BAD_BYTES))
def test_bad_bytes_raise_the_right_typed_error(name: str, portrait_jpeg: bytes, portrait_png: bytes) -> None:
    make, expected = BAD_BYTES[name]
    with pytest.raises(FaceGenderError) as caught:
        load_image(make(portrait_jpeg, portrait_png))
    assert type(caught.value) is expected
    assert caught.value.code == expected.code
    assert caught.value.code in ("bad_image", "unsupported_format")
    assert isinstance(caught.value, InvalidImageError)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow cannot write AVIF")
def test_a_real_avif_is_refused_as_unsupported(original: RGB) -> None:
    with pytest.raises(UnsupportedFormatError) as caught:
        load_image(save(Image.fromarray(original[:64, :64]), "AVIF"))
    assert caught.value.code == "unsupported_format"


def test_bad_paths_raise_bad_image(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for source in (tmp_path / "missing.jpg", str(tmp_path / "missing.jpg"), tmp_path, empty, "bad\x00name.jpg"):
        with pytest.raises(InvalidImageError) as caught:
            load_image(source)
        assert type(caught.value) is InvalidImageError
        assert caught.value.code == "bad_image"


def test_binary_file_objects_decode_as_their_bytes(tmp_path: Path, portrait_jpeg: bytes) -> None:
    path = tmp_path / "portrait.jpg"
    path.write_bytes(portrait_jpeg)
    expected = load_image(portrait_jpeg)
    with path.open("rb") as file:
        assert np.array_equal(load_image(file), expected)
    assert np.array_equal(load_image(io.BytesIO(portrait_jpeg)), expected)


def test_other_kinds_of_input_raise_type_error(tmp_path: Path) -> None:
    path = tmp_path / "text.txt"
    path.write_text("not bytes")
    with path.open() as text_file, pytest.raises(TypeError, match="binary mode"):
        load_image(text_file)  # type: ignore[arg-type]
    for source in (None, 5, ["photo.jpg"]):
        with pytest.raises(TypeError, match="a path, bytes, a binary file object"):
            load_image(source)  # type: ignore[arg-type]


def test_a_truncated_lazily_opened_pil_image_raises_bad_image(portrait_jpeg: bytes) -> None:
    with Image.open(io.BytesIO(portrait_jpeg[: len(portrait_jpeg) // 2])) as image, pytest.raises(InvalidImageError):
        load_image(image)


# --------------------------------------------------------------------------------------------- arrays and PIL


def test_numpy_arrays_are_accepted(original: RGB) -> None:
    luma = _grey(original)[:, :, 0]
    opaque = np.dstack([original, np.full(luma.shape, 255, np.uint8)])
    clear = np.dstack([original, np.zeros(luma.shape, np.uint8)])
    cases: list[tuple[NDArray[np.generic], RGB]] = [
        (luma, _grey(original)),
        (luma[:, :, None], _grey(original)),
        (original, original),
        (opaque, original),
        (clear, np.full_like(original, 255)),
        (original / 255.0, original),
        ((original / 255.0).astype(np.float32), original),
        (original.astype(np.uint16) * 257, original),
        (original.astype(np.int64), original),
        (np.asfortranarray(original), original),
        (original[:, ::-1], np.ascontiguousarray(original[:, ::-1])),
    ]
    for array, expected in cases:
        decoded = load_image(array)
        assert decoded.dtype == np.uint8
        assert decoded.flags.c_contiguous
        np.testing.assert_array_equal(decoded, expected, err_msg=f"{array.dtype} {array.shape}")


def test_non_finite_floats_do_not_spoil_the_scale() -> None:
    array = np.full((4, 4, 3), 0.5)
    array[0, 0, 0] = np.nan
    array[1, 1, 1] = np.inf
    decoded = load_image(array)
    assert decoded[2, 2].tolist() == [128, 128, 128]
    assert decoded[0, 0, 0] == 0


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((1, 4, 4, 3), np.uint8),
        np.zeros(4, np.uint8),
        np.zeros((4, 4, 3), bool),
        np.zeros((4, 4, 3), complex),
        np.zeros((4, 4, 3), object),
    ],
    ids=["empty", "two-channels", "4d", "1d", "bool", "complex", "object"],
)
def test_bad_arrays_raise_bad_image(array: NDArray[np.generic]) -> None:
    with pytest.raises(InvalidImageError) as caught:
        load_image(array)
    assert caught.value.code == "bad_image"


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK", "YCbCr", "I;16", "I", "F", "LA"])
def test_pil_images_of_every_mode_are_accepted(mode: str, original: RGB) -> None:
    image = Image.fromarray(original)
    luma = np.asarray(image.convert("L"))
    if mode == "I;16":
        image = Image.fromarray(luma.astype(np.uint16) * 257)
    elif mode == "I":
        image = Image.fromarray(luma.astype(np.int32) * 257)
    elif mode == "F":
        image = Image.fromarray(luma.astype(np.float32) / 255)
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    else:
        image = image.convert(mode)
    assert image.mode == mode
    decoded = load_image(image)
    assert decoded.shape == original.shape
    grey = mode in ("L", "I;16", "I", "F", "LA")
    bound = 0.0 if mode in ("RGB", "RGBA") else 6.0
    assert _mean_abs_diff(decoded, _grey(original) if grey else original) <= bound


# --------------------------------------------------------------------------------------------- size limits


def test_max_pixels_is_enforced_for_every_kind_of_input(original: RGB, portrait_png: bytes) -> None:
    pixels = original.shape[0] * original.shape[1]
    for source in (portrait_png, Image.fromarray(original), original):
        assert load_image(source, max_pixels=pixels).shape == original.shape  # the limit itself is allowed
        with pytest.raises(ImageTooLargeError) as caught:
            load_image(source, max_pixels=pixels - 1)
        assert caught.value.code == "image_too_large"


def _bomb_png_header_only() -> bytes:
    """A PNG that claims 40000x40000 but holds only a few bytes of pixel data."""
    return png_by_hand(40_000, 40_000, bit_depth=8, colour_type=3, plte=b"\x00\x00\x00", idat=zlib.compress(bytes(64)))


def _bomb_png_complete(side: int) -> bytes:
    """A complete, valid one-colour 1-bit palette PNG of ``side`` x ``side``: tiny on disk, huge in memory."""
    compressor = zlib.compressobj(9)
    block = bytes((1 + (side + 7) // 8) * 500)  # 500 rows of filter byte 0 and zero pixels
    parts = [compressor.compress(block) for _ in range(side // 500)]
    parts.append(compressor.compress(bytes((1 + (side + 7) // 8) * (side % 500))))
    parts.append(compressor.flush())
    return png_by_hand(side, side, bit_depth=1, colour_type=3, plte=b"\x00\x00\x00", idat=b"".join(parts))


def _bomb_gif(small: bytes, side: int) -> bytes:
    return small[:6] + struct.pack("<HH", side, side) + small[10:]


def _bomb_bmp(small: bytes, side: int) -> bytes:
    return small[:18] + struct.pack("<ii", side, side) + small[26:]


# Over our 40 MP limit but under Pillow's own decompression-bomb limit (about 89 MP), so that only our
# check stands between the header and the pixels; and far over both.
BOMBS: dict[str, Callable[[Image.Image], bytes]] = {
    "png-header-40000": lambda tiny: _bomb_png_header_only(),
    "png-complete-9000": lambda tiny: _bomb_png_complete(9_000),
    "png-complete-20000": lambda tiny: _bomb_png_complete(20_000),
    "jpeg-9000": lambda tiny: _patch_jpeg_size(save(tiny, "JPEG"), 9_000, 9_000),
    "jpeg-60000": lambda tiny: _patch_jpeg_size(save(tiny, "JPEG"), 60_000, 60_000),
    "gif-9000": lambda tiny: _bomb_gif(save(tiny, "GIF"), 9_000),
    "gif-65535": lambda tiny: _bomb_gif(save(tiny, "GIF"), 65_535),
    "bmp-9000": lambda tiny: _bomb_bmp(save(tiny, "BMP"), 9_000),
    "bmp-50000": lambda tiny: _bomb_bmp(save(tiny, "BMP"), 50_000),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_decompression_bombs_are_refused_from_the_header(
    name: str, original: RGB, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = BOMBS[name](Image.fromarray(original).resize((40, 50)))
    assert len(data) < 2_000_000
    decoded: list[object] = []
    real_load = ImageFile.ImageFile.load

    def spy_load(self: ImageFile.ImageFile) -> object:
        decoded.append(self)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError) as caught:
            load_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.code == "image_too_large"
    assert decoded == [], "pixels were decoded before the size was checked"
    assert peak < 8 * len(data) + 1_000_000, f"peak Python allocation {peak:,} bytes"


# --------------------------------------------------------------------------------------------- properties


def _check_outcome(data: bytes) -> None:
    try:
        decoded = load_image(data, max_pixels=4_000_000)
    except FaceGenderError as error:
        assert error.code in ("bad_image", "unsupported_format", "image_too_large")
        return
    assert decoded.dtype == np.uint8
    assert decoded.ndim == 3
    assert decoded.shape[2] == 3


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_typed_errors(data: bytes) -> None:
    _check_outcome(data)


_MUTATIONS = st.lists(
    st.tuples(st.sampled_from(["set", "delete", "insert"]), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
    min_size=1,
    max_size=6,
)


def _mutate(data: bytes, mutations: list[tuple[str, float, bytes]], keep: float) -> bytes:
    out = bytearray(data)
    for kind, where, value in mutations:
        at = min(int(where * len(out)), max(len(out) - 1, 0))
        if kind == "set":
            out[at : at + len(value)] = value
        elif kind == "delete":
            del out[at : at + len(value) * 8]
        else:
            out[at:at] = value
    return bytes(out[: max(1, int(len(out) * keep))])


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=200, deadline=None)
@given(mutations=_MUTATIONS, keep=st.sampled_from([1.0, 1.0, 1.0, 0.9, 0.5, 0.1]))
def test_mutated_real_jpeg_and_png_raise_only_typed_errors(
    small_jpeg: bytes, small_png: bytes, mutations: list[tuple[str, float, bytes]], keep: float
) -> None:
    _check_outcome(_mutate(small_jpeg, mutations, keep))
    _check_outcome(_mutate(small_png, mutations, keep))


# --------------------------------------------------------------------------------------------- reduced decoding


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_jpeg_decodes_at_a_reduced_scale_with_its_full_upright_size(orientation: int, original: RGB) -> None:
    big = np.asarray(Image.fromarray(original).resize((original.shape[1] * 4, original.shape[0] * 4)))
    data = with_orientation(big, orientation, "JPEG", quality=90)
    decoded = decode_image(data, min_scale=lambda width, height: 0.3)  # 1/2 is enough, 1/4 is not
    assert (decoded.height, decoded.width) == big.shape[:2]
    assert decoded.pixels.shape == (-(-big.shape[0] // 2), -(-big.shape[1] // 2), 3)
    assert decoded.factor_x == pytest.approx(2, rel=0.01) and decoded.factor_y == pytest.approx(2, rel=0.01)
    assert _mean_abs_diff(decoded.pixels[: original.shape[0] * 2 - 2], big[::2, ::2][: original.shape[0] * 2 - 2]) < 8


def test_reduced_decoding_is_for_jpeg_only_and_never_below_the_scale_asked(
    original: RGB, portrait_jpeg: bytes, portrait_png: bytes
) -> None:
    assert decode_image(portrait_png, min_scale=lambda width, height: 0.1).pixels.shape == original.shape
    assert decode_image(portrait_jpeg, min_scale=lambda width, height: 1.0).pixels.shape == original.shape
    eighth = decode_image(portrait_jpeg, min_scale=lambda width, height: 0.125)
    assert eighth.pixels.shape[:2] == (-(-original.shape[0] // 8), -(-original.shape[1] // 8))
    for source in (original, Image.fromarray(original)):  # already decoded: as it is
        assert decode_image(source, min_scale=lambda width, height: 0.1).pixels.shape == original.shape


def test_a_decoded_image_passes_through_and_only_at_full_size_as_an_array(portrait_jpeg: bytes) -> None:
    full = decode_image(portrait_jpeg)
    assert decode_image(full) is full
    np.testing.assert_array_equal(load_image(full), full.pixels)
    half = decode_image(portrait_jpeg, min_scale=lambda width, height: 0.5)
    assert isinstance(half, DecodedImage) and half.pixels.shape[0] < half.height
    with pytest.raises(ValueError, match="reduced scale"):
        load_image(half)
    # A reduced one keeps what it was decoded from, to be decoded again finer; a full-size one need not.
    assert half.source == portrait_jpeg and full.source is None
    np.testing.assert_array_equal(decode_image(half.source).pixels, full.pixels)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("reduction", [1, 2, 4])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpeg_pixels_are_exactly_pillows(orientation: int, reduction: int, mode: str, original: RGB) -> None:
    big = Image.fromarray(original).resize((original.shape[1] * 4, original.shape[0] * 4)).convert(mode)
    data = with_orientation(np.asarray(big.convert("RGB")), orientation, "JPEG", quality=90)
    if mode == "L":
        with Image.open(io.BytesIO(data)) as stored:
            data = save(stored.convert("L"), "JPEG", quality=90, exif=stored.getexif())
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == mode
        image.draft(None, (image.width // reduction, image.height // reduction))
        expected = np.asarray((ImageOps.exif_transpose(image) or image).convert("RGB"))
    decoded = decode_image(data, min_scale=lambda width, height: 1 / reduction)
    np.testing.assert_array_equal(decoded.pixels, expected)
