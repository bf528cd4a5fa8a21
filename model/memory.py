"""How much memory decoding an image will take, estimated from its header alone, before any pixel
buffer exists: a small file can declare a picture that needs gigabytes once decoded (a flat-colour
7740x7740 RGB PNG is 175 KB), so the pixel count alone does not bound what a decode costs.

Each estimate is the largest set of buffers our decode path holds at once, per pixel, plus the
compressed data a decoder may copy and a fixed allowance for codec working memory:

Pillow (PNG, JPEG, TIFF): Pillow's decoded image (1 byte per pixel for bilevel and 8-bit grey, 2
for 16-bit grey, 4 for everything else, colour included: it stores RGB as RGBX) and one copy of
it (the EXIF rotation, the RGB conversion or the grey channel), the samples as bytes for NumPy
twice (Pillow's encoder chunks and their join), then the float32 arrays: one per channel of the
samples, the luminance and the scaled result.

DICOM: the pixel data as read, the decoded array and one more copy of it (byte order, masking of
unused bits), the float32 arrays of the modality and VOI transforms (three at once, and NumPy's
percentile copy where there is no window), or, for colour, the float32 samples, the luminance and
its scaled copy. A deflated dataset is inflated in memory (twice while zlib joins its output).

The numbers are deliberately rounded up from what tests/model/test_decode_memory.py measures (the
peak resident memory of a decode), so that the estimate stays an upper bound.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from model.image import DecodeLimits, ImageTooLarge

# Decoder working memory besides the pixel buffers: row buffers, zlib windows, codec state.
CODEC_ALLOWANCE_BYTES = 8 * 1024 * 1024
_FLOAT32 = 4
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ONE_BYTE_MODES = frozenset({"1", "L"})
_GREY_FOUR_BYTE_MODES = frozenset({"I", "F", "LA", "La"})
_MODE_NAMES = {"1": "bilevel", "L": "8-bit grey", "LA": "8-bit grey with alpha", "P": "palette"}


@dataclass(frozen=True)
class DecodeEstimate:
    """The most memory decoding one image holds at once, and what the image is, for messages."""

    bytes: int
    description: str  # "7740x7740 RGB PNG"


# Called with a decode's estimate once its header has passed the checks and before its pixels
# are allocated; the decode runs inside the context it returns. A service uses it to keep the
# sum of concurrent decodes within a budget, and may refuse by raising.
Admission = Callable[[DecodeEstimate], AbstractContextManager[object]]


def admit_any(estimate: DecodeEstimate) -> AbstractContextManager[object]:
    """The admission of a decode that shares its memory with no one."""
    return nullcontext()


def raster_estimate(
    width: int, height: int, mode: str, fmt: str, compressed_bytes: int
) -> DecodeEstimate:
    """A PNG, JPEG or TIFF opened lazily by Pillow: its size and mode, before `load`."""
    pixels = width * height
    stored = _pillow_bytes_per_pixel(mode)
    if mode in _ONE_BYTE_MODES or mode in _SIXTEEN_BIT_MODES or mode in _GREY_FOUR_BYTE_MODES:
        array = 1 if mode in ("LA", "La") else stored  # LA keeps only its grey channel
        floats = 1
    else:  # palette, RGB(A), CMYK, YCbCr, ...: converted to 8-bit RGB
        array = 3
        floats = 3
    per_pixel = 2 * stored + 2 * array + _FLOAT32 * (floats + 2)
    return DecodeEstimate(
        pixels * per_pixel + compressed_bytes + CODEC_ALLOWANCE_BYTES,
        f"{width}x{height} {_MODE_NAMES.get(mode, mode)} {fmt.upper()}",
    )


def dicom_estimate(
    *,
    rows: int,
    columns: int,
    samples: int,
    bits_allocated: int,
    frames: int,
    compressed_bytes: int,
    inflated_bytes: int = 0,
) -> DecodeEstimate:
    """A DICOM image from its header: rows x columns x samples per pixel x bits allocated x
    frames; `compressed_bytes` is the encapsulated pixel data (0 for native), `inflated_bytes`
    the size of a deflated dataset once inflated (0 when it is not deflated)."""
    pixels = rows * columns * max(frames, 1)
    sample_bytes = max(bits_allocated, 8) // 8 * samples
    floats = 3 if samples == 1 else samples + 2
    per_pixel = 3 * sample_bytes + _FLOAT32 * (floats + 1)
    return DecodeEstimate(
        pixels * per_pixel + compressed_bytes + 2 * inflated_bytes + CODEC_ALLOWANCE_BYTES,
        f"{columns}x{rows} {bits_allocated}-bit {'grey' if samples == 1 else 'colour'} DICOM",
    )


def check_memory(estimate: DecodeEstimate, limits: DecodeLimits) -> None:
    """Refuse an image whose decode would need more than the limit per image."""
    if estimate.bytes > limits.max_decode_bytes:
        raise ImageTooLarge(
            f"decoding this {estimate.description} needs about {format_bytes(estimate.bytes)}; "
            f"the limit per image is {format_bytes(limits.max_decode_bytes)}"
        )


def format_bytes(size: int) -> str:
    """1.2 GB, 512 MB, 40 KB: binary multiples, as the limits are set."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} bytes"


def _pillow_bytes_per_pixel(mode: str) -> int:
    if mode in _ONE_BYTE_MODES or mode == "P":
        return 1
    if mode in _SIXTEEN_BIT_MODES:
        return 2
    return 4
