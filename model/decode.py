"""Bytes to a radiograph: sniff the format from the content (never from a filename) and hand the
bytes to the DICOM or raster decoder."""

from __future__ import annotations

import struct

from model.dicom import decode_dicom
from model.image import DecodedImage, DecodeLimits, UnsupportedFormat
from model.memory import Admission, admit_any
from model.raster import decode_raster

DEFAULT_LIMITS = DecodeLimits()
ACCEPTED_FORMATS = "DICOM, PNG, JPEG or TIFF"

_RASTER_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
# Formats people upload by mistake, named so the refusal says what was received.
_KNOWN_OTHER_MAGIC = (
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
)
_DICOM_PREFIX_OFFSET = 128
# A dataset without preamble starts with a file meta (0002) or identifying (0008) group element.
_BARE_DICOM_GROUPS = (0x0002, 0x0008)


def decode_image(
    data: bytes, limits: DecodeLimits = DEFAULT_LIMITS, admit: Admission = admit_any
) -> DecodedImage:
    """Decode an uploaded radiograph to float32 (H, W) pixels in [0, 1], bone bright.

    Raises a DecodeError subclass for anything that is not a single decodable radiograph
    within `limits`. Once the header has passed, the pixels are decoded inside the context
    `admit` returns for the decode's memory estimate (model.memory); it may refuse by raising.
    """
    fmt = sniff_format(data)
    if fmt == "dicom":
        return decode_dicom(data, limits, admit)
    return decode_raster(data, fmt, limits, admit)


def sniff_format(data: bytes) -> str:
    """The format the leading bytes announce: "dicom", "png", "jpeg" or "tiff".

    Raises UnsupportedFormat for anything else, naming the accepted formats.
    """
    if not data:
        raise UnsupportedFormat(f"the file is empty; expected {ACCEPTED_FORMATS}")
    # Before the raster magics: a DICOM preamble may itself carry a TIFF header (dual-format files).
    if data[_DICOM_PREFIX_OFFSET : _DICOM_PREFIX_OFFSET + 4] == b"DICM":
        return "dicom"
    for magic, fmt in _RASTER_MAGIC:
        if data.startswith(magic):
            return fmt
    if _looks_like_bare_dicom(data):
        return "dicom"
    for magic, name in _KNOWN_OTHER_MAGIC:
        if data.startswith(magic):
            raise UnsupportedFormat(f"{name} files are not accepted; expected {ACCEPTED_FORMATS}")
    raise UnsupportedFormat(f"unrecognised file format; expected {ACCEPTED_FORMATS}")


def _looks_like_bare_dicom(data: bytes) -> bool:
    """A DICOM dataset written without the 128-byte preamble and "DICM" prefix (older archives):
    the first element's group is 0002 or 0008, followed by an explicit VR (two capital letters)
    or, in implicit VR little endian, a 32-bit length that fits in the file."""
    if len(data) < 8:
        return False
    explicit_vr = data[4:6].isalpha() and data[4:6].isupper()
    (little_group,) = struct.unpack_from("<H", data)
    (big_group,) = struct.unpack_from(">H", data)
    if big_group in _BARE_DICOM_GROUPS:
        return explicit_vr  # big endian datasets are always explicit VR
    if little_group not in _BARE_DICOM_GROUPS:
        return False
    (implicit_length,) = struct.unpack_from("<I", data, 4)
    return explicit_vr or implicit_length <= len(data) - 8
