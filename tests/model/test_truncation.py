"""Raster files that stop before their header's image ends are refused, not padded: a PNG whose
compressed stream ends cleanly after a few rows, a TIFF whose strip list stops early, a JPEG cut
in the middle of its scan."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import ImageFile

from model import completeness
from model.decode import decode_image
from model.image import CorruptImage
from tests.support.images import jpeg_bytes, png_chunk, png_declaring

SIDE = 544
NOISE = np.random.default_rng(20).integers(1, 256, (SIDE, SIDE), dtype=np.uint8)


def png_rows(rows: np.ndarray) -> bytes:
    """The filtered scanlines of 8-bit grey rows: filter type 0 before each."""
    return np.hstack([np.zeros((len(rows), 1), np.uint8), rows]).tobytes()


def test_png_whose_image_data_ends_early_is_refused() -> None:
    # A complete zlib stream holding 54 of the 544 rows the header declares: Pillow reads it
    # without complaint and fills the other 490 rows with zeros.
    short = png_declaring(SIDE, SIDE, zlib.compress(png_rows(NOISE[:54])))

    with pytest.raises(CorruptImage, match="truncated PNG.*54 of 544 rows"):
        decode_image(short)


def test_png_with_part_of_a_row_missing_is_refused() -> None:
    short = png_declaring(SIDE, SIDE, zlib.compress(png_rows(NOISE)[:-1]))

    with pytest.raises(CorruptImage, match="truncated PNG.*543 of 544 rows"):
        decode_image(short)


def test_png_with_more_image_data_than_declared_is_read_as_far_as_declared() -> None:
    extra = np.vstack([NOISE, NOISE[:3]])
    decoded = decode_image(png_declaring(SIDE, SIDE, zlib.compress(png_rows(extra))))
    np.testing.assert_array_equal(decoded.pixels, NOISE / np.float32(255))


def test_complete_png_split_over_several_idat_chunks_decodes() -> None:
    stream = zlib.compress(png_rows(NOISE))
    pieces = [stream[start : start + 4096] for start in range(0, len(stream), 4096)]
    header = struct.pack(">IIBBBBB", SIDE, SIDE, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + b"".join(png_chunk(b"IDAT", piece) for piece in pieces)
        + png_chunk(b"IEND", b"")
    )

    decoded = decode_image(data)

    np.testing.assert_array_equal(decoded.pixels, NOISE / np.float32(255))


def test_a_complete_png_is_inflated_once(monkeypatch) -> None:
    inflaters = []
    real = completeness.zlib.decompressobj
    monkeypatch.setattr(
        completeness.zlib, "decompressobj", lambda: inflaters.append(real()) or inflaters[-1]
    )
    data = png_declaring(SIDE, SIDE, zlib.compress(png_rows(NOISE)))

    np.testing.assert_array_equal(decode_image(data).pixels, NOISE / np.float32(255))
    assert inflaters == []  # Pillow's own inflation was the only one


def test_a_complete_png_with_a_black_last_row_is_measured_and_decodes() -> None:
    # A last row of zeros could be Pillow's padding, so the stream is measured before trusting it.
    black_bottom = np.vstack([NOISE[:-1], np.zeros((1, SIDE), np.uint8)])
    data = png_declaring(SIDE, SIDE, zlib.compress(png_rows(black_bottom)))

    np.testing.assert_array_equal(decode_image(data).pixels, black_bottom / np.float32(255))
    with pytest.raises(CorruptImage, match="truncated PNG.*543 of 544 rows"):
        decode_image(png_declaring(SIDE, SIDE, zlib.compress(png_rows(black_bottom[:-1]))))


def interlaced_png(side: int, data_length: int) -> bytes:
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(bytes(data_length)))
        + png_chunk(b"IEND", b"")
    )


# A 64 x 64 Adam7 image: its seven passes are 8x8, 8x8, 16x8, 16x16, 32x16, 32x32 and 64x32
# pixels (columns x rows), each row one filter byte and a byte per pixel.
INTERLACED_64 = 8 * 9 + 8 * 9 + 8 * 17 + 16 * 17 + 16 * 33 + 32 * 33 + 32 * 65


def test_interlaced_png_is_measured_pass_by_pass() -> None:
    assert decode_image(interlaced_png(64, INTERLACED_64)).pixels.shape == (64, 64)
    with pytest.raises(CorruptImage, match="truncated PNG"):
        decode_image(interlaced_png(64, INTERLACED_64 - 65))


def test_jpeg_cut_in_its_scan_is_refused() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = jpeg_bytes(NOISE)
    scan = data.index(b"\xff\xda")

    with pytest.raises(CorruptImage, match="truncated JPEG"):
        decode_image(data[: scan + (len(data) - scan) // 2])


def strip_tiff(pixels: np.ndarray, rows_per_strip: int, strips: int) -> bytes:
    """An uncompressed 8-bit grey little-endian TIFF of `pixels` whose strip list holds only the
    first `strips` strips of `rows_per_strip` rows."""
    height, width = pixels.shape
    bodies = [
        pixels[start : start + rows_per_strip].tobytes()
        for start in range(0, height, rows_per_strip)
    ][:strips]
    offsets = np.cumsum([8] + [len(body) for body in bodies[:-1]]).tolist()
    offsets_at = 8 + sum(len(body) for body in bodies)
    counts_at = offsets_at + 4 * strips
    ifd_at = counts_at + 4 * strips
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value or offset
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, strips, offsets[0] if strips == 1 else offsets_at),
        (278, 4, 1, rows_per_strip),
        (279, 4, strips, len(bodies[0]) if strips == 1 else counts_at),
    ]
    return (
        b"II*\x00"
        + struct.pack("<I", ifd_at)
        + b"".join(bodies)
        + struct.pack(f"<{strips}I", *offsets)
        + struct.pack(f"<{strips}I", *(len(body) for body in bodies))
        + struct.pack("<H", len(entries))
        + b"".join(struct.pack("<HHII", *entry) for entry in entries)
        + struct.pack("<I", 0)
    )


def test_tiff_with_strips_missing_is_refused() -> None:
    pixels = NOISE[:128, :128]
    assert decode_image(strip_tiff(pixels, 16, 8)).pixels.shape == (128, 128)

    with pytest.raises(CorruptImage, match="truncated TIFF.*6,144 of its 16,384 pixels"):
        decode_image(strip_tiff(pixels, 16, 3))
