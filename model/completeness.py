"""Does a raster file carry all the pixels its header declares? Pillow pads some short files
without a word: a PNG whose compressed stream ends cleanly after a few rows gets its missing rows
as zeros, and a TIFF whose strip or tile list stops early gets blank strips. Either would be
embedded and matched as if it were the radiograph, so both are refused before decoding."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
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


def check_png_complete(data: bytes, image: Image.Image | None = None) -> None:
    """Refuse a PNG whose image data inflates to fewer bytes than its header's size, depth,
    colour type and interlacing need. Data past what the header declares is not read, as libpng
    only warns of it: the picture is what the header says. `image` is the file as Pillow
    decoded it, before any rotation, where it decoded."""
    width, height, depth, colour, interlaced = _png_header(data)
    idat = list(_idat_slices(data))  # the chunk walk: the file must reach its IEND
    if image is not None and not interlaced and _last_row_written(image):
        return
    row_bits = _PNG_CHANNELS.get(colour, 1) * depth
    expected = _png_data_length(width, height, row_bits, interlaced)
    inflated, finished = _inflated_length(iter(idat), limit=expected)
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


def _last_row_written(image: Image.Image) -> bool:
    """Pillow writes a row only once all of its data has inflated, top to bottom, into an image
    that starts as zeros: a last row with any bit set proves every row arrived, and saves
    inflating the stream a second time (a third of a PNG's decoding). A last row of zeros may be
    padding, and the stream is measured."""
    width, height = image.size
    return any(image.crop((0, height - 1, width, height)).tobytes())


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


# --- JPEG ----------------------------------------------------------------------------------------
# libjpeg takes any marker met inside a scan's entropy-coded data as the end of the data and fills
# what is missing with zero coefficients: a JPEG cut part-way and given an EOI marker decodes
# without an error, its missing blocks a flat mid-grey. Pillow does not pass libjpeg's warning on,
# so the file's own structure is checked instead.

_SOF_SEQUENTIAL_HUFFMAN = frozenset({0xC0, 0xC1})
_SOF_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_RST_MARKERS = frozenset(range(0xD0, 0xD8))
_STANDALONE_MARKERS = _RST_MARKERS | {0x01, 0xD8}
_EOI, _SOS, _DHT, _DRI = 0xD9, 0xDA, 0xC4, 0xDD
_MID_GREY = 128  # what a block of zero coefficients decodes to


@dataclass(frozen=True)
class _Component:
    id: int
    h: int
    v: int


@dataclass
class _Scan:
    components: list[tuple[int, int, int]]  # (component id, DC table, AC table)
    spectral: tuple[int, int]  # (Ss, Se)
    approximation: tuple[int, int]  # (Ah, Al)
    restart_interval: int
    tables: dict[tuple[int, int], dict[tuple[int, int], int]]  # (class, id) -> {(len, code): sym}
    segments: list[tuple[int, int]] = field(default_factory=list)  # entropy data between RSTs


@dataclass
class _JpegStructure:
    sof: int = -1
    width: int = 0
    height: int = 0
    components: list[_Component] = field(default_factory=list)
    scans: list[_Scan] = field(default_factory=list)
    ended: bool = False  # an EOI marker was reached


def check_jpeg_complete(data: bytes, image: Image.Image) -> None:
    """Refuse a JPEG whose scans stop before the last block of the frame: restart intervals
    missing, progressive scans that never complete the coefficients, or (where the decoded image
    ends in the flat mid-grey of missing data) entropy-coded data that runs out early.

    Not detected: a progressive JPEG cut inside its last scan (only the lowest bit of some
    coefficients is missing then) and arithmetic-coded JPEGs cut inside their last interval."""
    jpeg = _jpeg_structure(data)
    if jpeg.sof < 0 or not jpeg.scans or not jpeg.components:
        raise CorruptImage("truncated JPEG: no frame or no scan before its end")
    for number, scan in enumerate(jpeg.scans, start=1):
        expected = _scan_mcus(jpeg, scan)
        if scan.restart_interval:
            intervals = -(-expected // scan.restart_interval)
            if len(scan.segments) < intervals:
                raise CorruptImage(
                    f"truncated JPEG: scan {number} holds {len(scan.segments)} of its "
                    f"{intervals} restart intervals"
                )
    if jpeg.sof in _SOF_PROGRESSIVE:
        _check_progression(jpeg)
    elif jpeg.sof in _SOF_SEQUENTIAL_HUFFMAN and _ends_in_mid_grey(image, jpeg):
        _check_last_scan_data(data, jpeg)


def _jpeg_structure(data: bytes) -> _JpegStructure:
    """The frame and the scans up to the first EOI marker, walking the marker segments."""
    jpeg = _JpegStructure()
    tables: dict[tuple[int, int], dict[tuple[int, int], int]] = {}
    restart_interval, offset = 0, 2
    while offset + 4 <= len(data) and not jpeg.ended:
        if data[offset] != 0xFF:
            raise CorruptImage(f"corrupt JPEG: no marker at byte {offset:,}")
        marker = data[offset + 1]
        if marker == 0xFF or marker in _STANDALONE_MARKERS:
            offset += 1 if marker == 0xFF else 2
            continue
        if marker == _EOI:
            jpeg.ended = True
            break
        (length,) = struct.unpack_from(">H", data, offset + 2)
        body = data[offset + 4 : offset + 2 + length]
        offset += 2 + length
        if marker in _SOF_MARKERS and len(body) >= 6:
            _read_frame(jpeg, marker, body)
        elif marker == _DHT:
            _read_huffman_tables(body, tables)
        elif marker == _DRI and len(body) >= 2:
            (restart_interval,) = struct.unpack_from(">H", body)
        elif marker == _SOS:
            scan = _read_scan(body, restart_interval, dict(tables))
            offset = _entropy_segments(data, offset, scan)
            jpeg.scans.append(scan)
    return jpeg


def _read_frame(jpeg: _JpegStructure, marker: int, body: bytes) -> None:
    _, jpeg.height, jpeg.width, count = struct.unpack_from(">BHHB", body)
    jpeg.sof = marker
    jpeg.components = [
        _Component(body[6 + 3 * i], body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15)
        for i in range(count)
        if 8 + 3 * i < len(body)
    ]


def _read_huffman_tables(body: bytes, tables: dict) -> None:
    offset = 0
    while offset + 17 <= len(body):
        kind, counts = body[offset], body[offset + 1 : offset + 17]
        symbols = body[offset + 17 : offset + 17 + sum(counts)]
        codes, code, index = {}, 0, 0
        for length, count in enumerate(counts, start=1):
            for _ in range(count):
                if index < len(symbols):
                    codes[(length, code)] = symbols[index]
                code, index = code + 1, index + 1
            code <<= 1
        tables[(kind >> 4, kind & 15)] = codes
        offset += 17 + sum(counts)


def _read_scan(body: bytes, restart_interval: int, tables: dict) -> _Scan:
    count = body[0] if body else 0
    components = [
        (body[1 + 2 * i], body[2 + 2 * i] >> 4, body[2 + 2 * i] & 15) for i in range(count)
    ]
    tail = body[1 + 2 * count : 4 + 2 * count].ljust(3, b"\0")
    return _Scan(
        components, (tail[0], tail[1]), (tail[2] >> 4, tail[2] & 15), restart_interval, tables
    )


def _entropy_segments(data: bytes, offset: int, scan: _Scan) -> int:
    """Record the scan's entropy-coded data, split at its restart markers; the offset of the
    marker that ends it."""
    start = offset
    while True:
        found = data.find(b"\xff", offset)
        if found < 0 or found + 1 >= len(data):
            scan.segments.append((start, len(data)))
            return len(data)
        following = data[found + 1]
        if following == 0x00 or following == 0xFF:
            offset = found + 1 if following == 0xFF else found + 2
            continue
        scan.segments.append((start, found))
        if following not in _RST_MARKERS:
            return found
        start = offset = found + 2


def _scan_mcus(jpeg: _JpegStructure, scan: _Scan) -> int:
    """MCUs in a scan: interleaved scans cover the frame in MCUs of the largest sampling
    factors; a single-component scan covers its component in 8x8 blocks."""
    h_max = max(c.h for c in jpeg.components) or 1
    v_max = max(c.v for c in jpeg.components) or 1
    if len(scan.components) == 1:
        component = _component(jpeg, scan.components[0][0])
        width = -(-jpeg.width * component.h // h_max)
        height = -(-jpeg.height * component.v // v_max)
        return -(-width // 8) * -(-height // 8)
    return -(-jpeg.width // (8 * h_max)) * -(-jpeg.height // (8 * v_max))


def _component(jpeg: _JpegStructure, component_id: int) -> _Component:
    found = next((c for c in jpeg.components if c.id == component_id), None)
    if found is None:
        raise CorruptImage(f"corrupt JPEG: a scan names component {component_id}, not in its frame")
    return found


def _check_progression(jpeg: _JpegStructure) -> None:
    """Every coefficient of every component must have been refined to its last bit (Al = 0)."""
    lowest = {c.id: [None] * 64 for c in jpeg.components}
    for scan in jpeg.scans:
        first, last = scan.spectral
        for component_id, _, _ in scan.components:
            bits = lowest.get(component_id)
            for k in range(first, min(last, 63) + 1) if bits is not None else ():
                bits[k] = scan.approximation[1]
    for component_id, bits in lowest.items():
        incomplete = sum(bit != 0 for bit in bits)
        if incomplete:
            raise CorruptImage(
                f"truncated progressive JPEG: its scans stop before {incomplete} of the 64 "
                f"coefficients of component {component_id} are complete"
            )


def _ends_in_mid_grey(image: Image.Image, jpeg: _JpegStructure) -> bool:
    """Whether the frame's last MCU decoded to the flat grey of missing data."""
    h_max = 8 * max(c.h for c in jpeg.components)
    v_max = 8 * max(c.v for c in jpeg.components)
    width, height = image.size
    left, top = (width - 1) // h_max * h_max, (height - 1) // v_max * v_max
    corner = np.asarray(image.crop((left, top, width, height)))
    return bool(corner.size) and bool((corner == _MID_GREY).all())


def _check_last_scan_data(data: bytes, jpeg: _JpegStructure) -> None:
    """Decode the Huffman codes of the last scan's last interval (not the coefficients), counting
    the MCUs its data holds."""
    scan = jpeg.scans[-1]
    expected = _scan_mcus(jpeg, scan)
    if scan.restart_interval:
        expected -= scan.restart_interval * (len(scan.segments) - 1)
    start, end = scan.segments[-1]
    blocks = []
    for component_id, dc, ac in scan.components:
        component = _component(jpeg, component_id)
        count = component.h * component.v if len(scan.components) > 1 else 1
        blocks += [(scan.tables.get((0, dc), {}), scan.tables.get((1, ac), {}))] * count
    held = _HuffmanReader(data[start:end].replace(b"\xff\x00", b"\xff")).count_mcus(
        blocks, expected
    )
    if held < expected:
        raise CorruptImage(
            f"truncated JPEG: its image data ends after {held:,} of the {expected:,} blocks "
            "of its last interval"
            if scan.restart_interval
            else f"truncated JPEG: its image data ends after {held:,} of its {expected:,} MCUs"
        )


class _HuffmanReader:
    def __init__(self, data: bytes):
        self.data = data
        self.bits = 8 * len(data)
        self.position = 0  # bits consumed

    def count_mcus(self, blocks: list[tuple[dict, dict]], expected: int) -> int:
        for mcu in range(expected):
            for dc, ac in blocks:
                if not self._block(dc, ac):
                    return mcu
        return expected

    def _block(self, dc: dict, ac: dict) -> bool:
        size = self._symbol(dc)
        if size is None or not self._skip(size):
            return False
        k = 1
        while k < 64:
            symbol = self._symbol(ac)
            if symbol is None:
                return False
            run, size = symbol >> 4, symbol & 15
            if size == 0 and run != 15:
                break  # end of block
            if not self._skip(size):
                return False
            k += run + 1
        return True

    def _symbol(self, table: dict) -> int | None:
        code = 0
        for length in range(1, 17):
            if self.position >= self.bits:
                return None
            byte = self.data[self.position >> 3]
            code = code << 1 | (byte >> (7 - (self.position & 7))) & 1
            self.position += 1
            symbol = table.get((length, code))
            if symbol is not None:
                return symbol
        return None

    def _skip(self, count: int) -> bool:
        self.position += count
        return self.position <= self.bits
