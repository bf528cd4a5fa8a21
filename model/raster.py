"""PNG, JPEG and TIFF through Pillow, plus the checks every format shares.

Normalisation to [0, 1]: integer samples are divided by their container's full range (255 for
8-bit, 65535 for 16-bit), so a 16-bit PNG written as round(y * 65535) decodes back to y. Colour
becomes ITU-R BT.601 luminance and alpha is dropped. 32-bit integer images are accepted only
when their values fit 16 bits (then divided by 65535); 32-bit float images are taken as already
being in [0, 1] and clipped to it. The EXIF orientation, when present, is applied, so the pixels
are the way up a viewer shows them.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
from PIL import Image, ImageOps

from model.completeness import check_jpeg_complete, check_png_complete, check_tiff_complete
from model.image import (
    CorruptImage,
    DecodedImage,
    DecodeError,
    DecodeLimits,
    ImageMetadata,
    ImageTooLarge,
    ImageTooSmall,
    MultiFrameImage,
    UnsupportedFormat,
)
from model.memory import Admission, admit_any, check_memory, raster_estimate

_PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def check_dimensions(width: int, height: int, limits: DecodeLimits) -> None:
    """Refuse by the header's size alone, before any pixel buffer exists."""
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height:,} pixels; "
            f"the limit is {limits.max_pixels:,}"
        )
    if min(width, height) < limits.min_side:
        raise ImageTooSmall(
            f"image is {width}x{height} pixels; both sides must be at least {limits.min_side}"
        )


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an (H, W, 3) array, as float32 in the input's units."""
    return rgb.astype(np.float32) @ _BT601


def decode_raster(
    data: bytes, fmt: str, limits: DecodeLimits, admit: Admission = admit_any
) -> DecodedImage:
    """Decode PNG, JPEG or TIFF bytes; `fmt` is the sniffed format: "png", "jpeg" or "tiff".
    The pixels are decoded inside `admit`'s context, entered with the decode's memory estimate."""
    label = fmt.upper()
    image = _open(data, fmt)
    frames = _frame_count(image, label)
    if frames > 1:
        raise MultiFrameImage(f"{label} holds {frames} frames; upload a single radiograph")
    width, height = image.size
    check_dimensions(width, height, limits)
    estimate = raster_estimate(width, height, image.mode, fmt, len(data))
    check_memory(estimate, limits)
    if fmt == "tiff":
        check_tiff_complete(image)
    with admit(estimate):
        pixels, bits = _load_grey(image, label, data)
    return DecodedImage(
        pixels=pixels,
        metadata=ImageMetadata(
            format=fmt, width=pixels.shape[1], height=pixels.shape[0], bits_stored=bits
        ),
    )


def _open(data: bytes, fmt: str) -> Image.Image:
    # Image.open reads only the header, so the size can be checked before anything is allocated.
    # Pillow's global MAX_IMAGE_PIXELS is left alone (other code shares it); its bomb error is
    # just another way of saying the image is too large.
    try:
        return Image.open(BytesIO(data), formats=[_PILLOW_FORMATS[fmt]])
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except Exception as exc:  # Pillow's parsers raise many exception types on malformed headers
        raise CorruptImage(f"unreadable {fmt.upper()} header: {exc}") from exc


def _frame_count(image: Image.Image, label: str) -> int:
    try:
        return int(getattr(image, "n_frames", 1))
    except Exception as exc:  # counting TIFF pages walks the IFD chain, which may be broken
        raise CorruptImage(f"corrupt {label} page structure: {exc}") from exc


def _load_grey(image: Image.Image, label: str, data: bytes) -> tuple[np.ndarray, int]:
    # ImageFile.LOAD_TRUNCATED_IMAGES stays False, so a short file raises here instead of being
    # padded with black.
    try:
        image.load()
        # Before the EXIF rotation: the checks look at the last row or MCU the file holds.
        if label == "PNG":
            check_png_complete(data, image)
        elif label == "JPEG":
            check_jpeg_complete(data, image)
        ImageOps.exif_transpose(image, in_place=True)
        return _to_unit_grey(image)
    except DecodeError:
        raise
    except Exception as exc:  # truncation and corruption surface as OSError, SyntaxError, ...
        if label == "PNG":  # where rows are missing, say how many
            check_png_complete(data)
        raise CorruptImage(f"corrupt or truncated {label}: {exc}") from exc


def _to_unit_grey(image: Image.Image) -> tuple[np.ndarray, int]:
    """(float32 (H, W) in [0, 1], bits per sample) following the module's normalisation rules."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image).astype(np.float32) / 65535, 16
    if mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise UnsupportedFormat(
                "32-bit integer image with values outside 0..65535; save it as 16-bit"
            )
        return values.astype(np.float32) / 65535, 16
    if mode == "F":
        values = np.asarray(image).astype(np.float32)
        if not np.isfinite(values).all():
            raise CorruptImage("floating-point image contains NaN or infinite values")
        return np.clip(values, 0, 1), 32
    if mode == "1":
        return np.asarray(image).astype(np.float32), 1
    if mode in ("L", "LA"):
        return np.asarray(image.getchannel(0)).astype(np.float32) / 255, 8
    # Palette, RGB(A), CMYK, YCbCr, ...: Pillow's RGB conversion is 8-bit for all of them.
    return luminance(np.asarray(image.convert("RGB"))) / 255, 8
