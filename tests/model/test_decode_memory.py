"""Decoding is bounded by memory: the estimate made from the header alone is an upper bound of
what a decode really takes, an image over the limit is refused before its pixels exist, and a JPEG
cut short and given an end marker is refused instead of decoding with grey rows."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tracemalloc
import zlib
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from model.decode import decode_image
from model.image import CorruptImage, DecodeLimits, ImageTooLarge
from model.memory import DecodeEstimate
from tests.support.images import jpeg_bytes
from tests.support.servers import REPO


def flat_png(side: int, colour: bytes = b"\x50\x60\x70") -> bytes:
    """A side x side RGB PNG of one colour, written row by row: 7740 x 7740 is about 175 KB."""
    deflater = zlib.compressobj(9)
    row = b"\x00" + colour * side
    idat = b"".join(deflater.compress(row) for _ in range(side)) + deflater.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


# The real decode in a fresh process: its peak resident memory (VmHWM, reset just before) over
# what it held before, next to the estimate the decoder admitted it with.
MEASURE = """
import ctypes, json, sys
import numpy as np
from model.decode import decode_image
from model.image import DecodeLimits
from tests.support.images import dicom_bytes, png_bytes

def make(kind, side):
    rng = np.random.default_rng(0)
    if kind == "png 8-bit grey":
        return png_bytes(rng.integers(0, 256, (side, side), dtype=np.uint8))
    if kind == "png 16-bit grey":
        return png_bytes(rng.integers(0, 65536, (side, side), dtype=np.uint16))
    if kind == "png rgb":
        return png_bytes(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    return dicom_bytes(rng.integers(0, 4096, (side, side), dtype=np.uint16), bits_stored=12)

def rss(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(key))

limits = DecodeLimits(max_decode_bytes=1 << 40)
kind, side = sys.argv[1], int(sys.argv[2])
decode_image(make(kind, 128), limits)  # imports and codecs loaded first
data = make(kind, side)
estimates = []
def admit(estimate):
    from contextlib import nullcontext
    estimates.append(estimate.bytes)
    return nullcontext()
ctypes.CDLL("libc.so.6").malloc_trim(0)
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
before = rss("VmRSS")
decode_image(data, limits, admit)
print(json.dumps({"measured": rss("VmHWM") - before, "estimate": estimates[0]}))
"""


@pytest.mark.parametrize(
    ("kind", "side"),
    [
        ("png 8-bit grey", 1500),
        ("png 16-bit grey", 1500),
        ("png 16-bit grey", 2500),
        ("png rgb", 1500),
        ("dicom 16-bit grey", 1500),
        ("dicom 16-bit grey", 2500),
    ],
)
def test_the_estimate_bounds_what_a_decode_really_takes(kind, side):
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, kind, str(side)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    # The decode really allocated the image (at least its float32 result)...
    assert result["measured"] >= 4 * side * side
    # ...and no more than estimated.
    assert result["estimate"] >= result["measured"], result


def test_a_huge_flat_png_is_refused_with_the_numbers_before_any_pixel_is_allocated():
    data = flat_png(7740)
    assert len(data) < 400_000
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge) as refused:
            decode_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(refused.value)
    assert "7740x7740 RGB PNG" in message
    assert "GB" in message and "the limit per image is 512 MB" in message
    assert peak < 20 * 1024 * 1024  # the 7740x7740 float32 result alone would be 240 MB


def test_the_limit_is_the_setting_and_the_admission_sees_the_estimate():
    data = flat_png(1000)
    seen: list[DecodeEstimate] = []

    def admit(estimate: DecodeEstimate):
        seen.append(estimate)
        return BytesIO()  # any context manager

    decode_image(data, DecodeLimits(), admit)
    assert seen and seen[0].description == "1000x1000 RGB PNG"
    with pytest.raises(ImageTooLarge, match="the limit per image is 10 MB"):
        decode_image(data, DecodeLimits(max_decode_bytes=10 * 1024 * 1024))


def test_a_detector_sized_16_bit_radiograph_is_within_the_default_limit():
    # 4300 x 4300 16-bit grey: the largest flat panels. Only the header is read.
    out = BytesIO()
    Image.new("I;16", (4300, 4300)).save(out, "PNG")
    seen: list[DecodeEstimate] = []

    def admit(estimate: DecodeEstimate):
        seen.append(estimate)
        raise RuntimeError("stop before decoding")

    with pytest.raises(RuntimeError, match="stop before decoding"):
        decode_image(out.getvalue(), DecodeLimits(), admit)
    assert seen[0].bytes <= DecodeLimits().max_decode_bytes


# --- JPEG cut short ------------------------------------------------------------------------------


def gradient(channels: int = 1) -> np.ndarray:
    base = (np.add.outer(np.arange(600), np.arange(500)) % 256).astype(np.uint8)
    return base if channels == 1 else np.stack([base, base[::-1], 255 - base], axis=-1)


def mid_grey_below(rows: int) -> np.ndarray:
    """An image whose lower part really is the flat grey that missing JPEG data decodes to."""
    pixels = np.full((512, 512), 128, dtype=np.uint8)
    pixels[:rows] = np.random.default_rng(0).integers(0, 256, (rows, 512))
    return pixels


VARIANTS = {
    "baseline grey": lambda: jpeg_bytes(gradient()),
    "baseline colour": lambda: jpeg_bytes(gradient(3)),
    "baseline colour 4:4:4": lambda: jpeg_bytes(gradient(3), subsampling=0),
    "ending in mid grey": lambda: jpeg_bytes(mid_grey_below(100)),
    "progressive grey": lambda: jpeg_bytes(gradient(), progressive=True),
    "progressive colour": lambda: jpeg_bytes(gradient(3), progressive=True),
    "restart every 5 blocks": lambda: jpeg_bytes(gradient(3), restart_marker_blocks=5),
    "restart every 2 rows": lambda: jpeg_bytes(gradient(), restart_marker_rows=2),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_valid_jpeg_variants_are_accepted(variant):
    decoded = decode_image(VARIANTS[variant]())
    assert decoded.metadata.format == "jpeg"


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_jpeg_cut_in_half_and_given_an_end_marker_is_refused(variant):
    data = VARIANTS[variant]()
    cut = data[: len(data) // 2] + b"\xff\xd9"
    with pytest.raises(CorruptImage, match="truncated"):
        decode_image(cut)
