"""Does a raster file carry all the pixels its header declares? Pillow pads some short files
without a word: a PNG whose compressed stream ends cleanly after a few rows gets its missing rows
as zeros, and a TIFF whose strip or tile list stops early gets blank strips. Either would be
embedded and matched as if it were the radiograph, so both are refused before decoding."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from PIL import Image

from model.image import CorruptImage

_PNG_SIGNATURE_LENGTH = 8
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by IHDR colour type
# Adam7's seven passes: (first column, first row, column step, row step).
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
# The stream is fed in slices of this size (so that what zlib leaves over, and copies, stays
# small) and its inflated bytes counted in pieces of the next, never held whole.
_COMPRESSED_SLICE = 1 << 16
_INFLATE_PIECE = 1 << 20


def check_png_complete(data: bytes) -> None:
    """Refuse a PNG whose image data inflates to fewer bytes than its header's size, depth,
    colour type and interlacing need. Data past what the header declares is not read, as libpng
    only warns of it: the picture is what the header says."""
    width, height, depth, colour, interlaced = _png_header(data)
    row_bits = _PNG_CHANNELS.get(colour, 1) * depth
    expected = _png_data_length(width, height, row_bits, interlaced)
    inflated, finished = _inflated_length(_idat_slices(data), limit=expected)
    if inflated < expected or (inflated == expected and not finished):
        rows = (
            ""
            if interlaced
            else f", {inflated // (1 + (width * row_bits + 7) // 8)} of {height} rows"
        )
        raise CorruptImage(
            f"truncated PNG: its image data holds {inflated:,} of the {expected:,} bytes its "
            f"{width}x{height} header declares{rows}"
        )


def check_tiff_complete(image: Image.Image) -> None:
    """Refuse a TIFF whose strips or tiles do not cover the whole image."""
    width, height = image.size
    # Separate colour planes repeat the same extents once per plane; each area counts once.
    extents = {tuple(tile.extents) for tile in image.tile}
    covered = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in extents)
    if covered < width * height:
        raise CorruptImage(
            f"truncated TIFF: its strips or tiles hold {covered:,} of its {width * height:,} pixels"
        )


def _png_header(data: bytes) -> tuple[int, int, int, int, bool]:
    # Pillow has already read the IHDR chunk, which PNG requires to come first.
    width, height, depth, colour, _, _, interlace = struct.unpack_from(
        ">IIBBBBB", data, _PNG_SIGNATURE_LENGTH + 8
    )
    return width, height, depth, colour, interlace == 1


def _png_data_length(width: int, height: int, row_bits: int, interlaced: bool) -> int:
    """Filter bytes and samples of every row (of every Adam7 pass that has pixels)."""
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    total = 0
    for first_column, first_row, column_step, row_step in passes:
        columns = max(0, (width - first_column + column_step - 1) // column_step)
        rows = max(0, (height - first_row + row_step - 1) // row_step)
        if columns and rows:
            total += rows * (1 + (columns * row_bits + 7) // 8)
    return total


def _idat_slices(data: bytes) -> Iterator[memoryview]:
    """The IDAT chunks' bodies, in order and in slices, up to IEND."""
    view = memoryview(data)
    offset = _PNG_SIGNATURE_LENGTH
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        body_end = offset + 8 + length
        if body_end + 4 > len(data):
            raise CorruptImage(f"truncated PNG: its {kind!r} chunk runs past the end of the file")
        if kind == b"IEND":
            return
        if kind == b"IDAT":
            for start in range(offset + 8, body_end, _COMPRESSED_SLICE):
                yield view[start : min(start + _COMPRESSED_SLICE, body_end)]
        offset = body_end + 4
    raise CorruptImage("truncated PNG: the file ends before its IEND chunk")


def _inflated_length(slices: Iterator[memoryview], *, limit: int) -> tuple[int, bool]:
    """How many bytes the zlib stream inflates to, counting no further than just past `limit`,
    and whether the stream ended properly."""
    inflater = zlib.decompressobj()
    total = 0
    try:
        for piece in slices:
            pending = piece
            while pending and total <= limit:
                total += len(inflater.decompress(pending, _INFLATE_PIECE))
                pending = inflater.unconsumed_tail
            if total > limit or inflater.eof:
                break
    except zlib.error as exc:
        raise CorruptImage(f"corrupt PNG image data: {exc}") from exc
    return total, inflater.eof
