"""DICOM radiographs through pydicom: refuse what is not one greyscale or colour image, then map
stored values through the modality and VOI transforms to [0, 1] with bone bright.

Pixel pipeline for greyscale: stored values (pydicom masks unused high bits and applies the sign)
-> Modality LUT Sequence, else Rescale Slope/Intercept -> VOI LUT Sequence, else the first
Window Center/Width (PS3.3 C.11.2.1.2, honouring VOI LUT Function), else the 0.5th..99.5th
percentile of the modality values -> MONOCHROME1 inverted. Colour (RGB and the YBR family) is
display-ready: BT.601 luminance divided by 2**BitsStored - 1. Palette colour is refused.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from io import BytesIO
from math import isfinite
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.filereader import read_dataset, read_preamble
from pydicom.pixels import get_decoder
from pydicom.pixels.decoders.base import Decoder
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGExtended12Bit,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RTDoseStorage,
    SegmentationStorage,
)
from scipy.special import expit

from model.image import (
    CorruptImage,
    DecodedImage,
    DecodeLimits,
    ImageMetadata,
    ImageTooLarge,
    MultiFrameImage,
    NotAnImage,
    UnsupportedFormat,
)
from model.memory import Admission, admit_any, check_memory, dicom_estimate
from model.raster import check_dimensions, luminance

# Large values (the pixel data) stay in the upload buffer until the header has passed its checks.
_DEFER_SIZE = "256 KB"
# Objects that carry pixel data which is not a picture of anatomy.
_NON_IMAGE_SOP_CLASSES = {
    RTDoseStorage: "radiotherapy dose grid",
    SegmentationStorage: "segmentation",
}
_NON_IMAGE_MODALITIES = {"RTDOSE": "radiotherapy dose grid", "SEG": "segmentation"}
_GREY = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420")
# Header allowance on top of the largest pixel data a deflated file may inflate to.
_INFLATE_SLACK_BYTES = 1 << 20
_INFLATE_CHUNK_BYTES = 1 << 16
# Most robust on malformed input first: pydicom's own RLE decoder (pylibjpeg-rle panics with a
# BaseException on some corrupt data), then the continuously fuzzed openjpeg, CharLS and
# libjpeg-turbo, GDCM last.
_PLUGIN_PREFERENCE = ("pydicom", "pylibjpeg", "pyjpegls", "pillow", "gdcm")
# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), plus JPEG-LS SOF55 (F7).
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
_AGE = re.compile(r"(\d{1,3})([DWMY])")
_DAYS_PER_YEAR = 365.25
_AGE_UNIT_YEARS = {"D": 1 / _DAYS_PER_YEAR, "W": 7 / _DAYS_PER_YEAR, "M": 1 / 12, "Y": 1.0}
# The longest value (in characters) each text VR read here may have (PS3.5 6.2); a longer value,
# or one with control characters, is not what the element can hold and counts as absent.
_VR_MAX_CHARS = {"AS": 4, "CS": 16, "DA": 8, "LO": 64, "SH": 16, "UI": 64}
_OTHER_VR_MAX_CHARS = 1024
_UNDEFINED_LENGTH = 0xFFFFFFFF
# Pixel spacings outside this range (mm) are not a radiograph's: the same bounds as the API's.
_PLAUSIBLE_SPACING_MM = (0.001, 10.0)
# How much of a malformed value a refusal quotes.
_QUOTED_CHARS = 64


@dataclass(frozen=True)
class _PixelHeader:
    rows: int
    columns: int
    samples: int
    bits_allocated: int
    bits_stored: int
    photometric: str


def decode_dicom(data: bytes, limits: DecodeLimits, admit: Admission = admit_any) -> DecodedImage:
    """Decode DICOM bytes (with or without the 128-byte preamble) into a DecodedImage. The
    pixels are decoded inside `admit`'s context, entered with the decode's memory estimate."""
    inflated = _refuse_deflate_bomb(data, limits)
    ds = _parse(data)
    truncation = _truncation(ds, len(data))
    _refuse_non_images(ds, truncation)
    if truncation:
        raise CorruptImage(f"truncated DICOM: {truncation}")
    header = _read_header(ds)
    check_dimensions(header.columns, header.rows, limits)
    estimate = dicom_estimate(
        rows=header.rows,
        columns=header.columns,
        samples=header.samples,
        bits_allocated=header.bits_allocated,
        frames=1,  # _read_header refuses more
        compressed_bytes=len(data),
        inflated_bytes=inflated,
    )
    check_memory(estimate, limits)
    syntax = _transfer_syntax(ds)
    decoder = _decoder(syntax, header)
    with admit(estimate):
        stored = _decode_stored(ds, header, decoder)
        pixels = _to_unit_range(stored, ds, header)
    return DecodedImage(pixels=pixels, metadata=_metadata(ds, header, syntax))


# --- parsing -------------------------------------------------------------------------------------


def _refuse_deflate_bomb(data: bytes, limits: DecodeLimits) -> int:
    """pydicom inflates a deflated dataset in one piece, so a small upload could expand to many
    gigabytes; measure the inflated size in bounded chunks first. Returns it (0 when the
    dataset is not deflated)."""
    try:
        fp = BytesIO(data)
        read_preamble(fp, force=True)
        if data[fp.tell() : fp.tell() + 2] != b"\x02\x00":
            return 0  # no file meta group, so no transfer syntax that could be deflate
        meta = read_dataset(fp, is_implicit_VR=False, is_little_endian=True, stop_when=_past_meta)
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            return 0
        budget = limits.max_pixels * 3 * 2 + _INFLATE_SLACK_BYTES  # 16-bit RGB at the limit
        inflated = _inflated_size(memoryview(data)[fp.tell() :], stop_after=budget)
    except Exception as exc:  # a file meta group or deflate stream broken in any way
        raise CorruptImage(f"unreadable DICOM file meta or deflate stream: {exc}") from exc
    if inflated > budget:
        raise ImageTooLarge(f"deflated DICOM expands beyond {budget:,} bytes")
    return inflated


def _past_meta(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag.group != 0x0002


def _inflated_size(deflated: memoryview, stop_after: int) -> int:
    # Input goes in small slices so that neither the output nor the unconsumed input is copied
    # in bulk; counting stops once past `stop_after`.
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size = 0
    for start in range(0, len(deflated), _INFLATE_CHUNK_BYTES):
        pending: bytes | memoryview = deflated[start : start + _INFLATE_CHUNK_BYTES]
        while pending and not inflater.eof and size <= stop_after:
            size += len(inflater.decompress(pending, _INFLATE_CHUNK_BYTES))
            pending = inflater.unconsumed_tail
        if inflater.eof or size > stop_after:
            break
    return size


def _parse(data: bytes) -> Dataset:
    # force=True because decode.py has already sniffed the bytes as DICOM, preamble or not.
    try:
        ds = pydicom.dcmread(BytesIO(data), defer_size=_DEFER_SIZE, force=True)
    except RecursionError:  # pydicom reads nested sequences recursively
        raise CorruptImage("DICOM sequences are nested too deeply to read") from None
    except Exception as exc:  # pydicom fails on malformed input with many exception types
        raise CorruptImage(f"unreadable DICOM: {exc}") from exc
    if len(ds) == 0:
        raise CorruptImage("DICOM file holds no data elements")
    return ds


def _truncation(ds: Dataset, size: int) -> str | None:
    """What is cut off, where an element declares more bytes than the file holds: pydicom reads
    what there is of it and stops, so a refusal for what is then missing (the pixel data) or too
    short names it. None for a whole file."""
    if _text(_file_meta(ds), "TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return None  # positions are in the inflated dataset, not in the file
    for tag in sorted(ds.keys()):  # Dataset iterates over elements, read and converted
        element = ds.get_item(tag, keep_deferred=True)  # without reading a deferred value
        if not isinstance(element, RawDataElement) or element.length == _UNDEFINED_LENGTH:
            continue
        if element.value_tell + element.length > size:
            return (
                f"element {element.tag} declares {element.length:,} bytes, "
                f"but the file ends {max(0, size - element.value_tell):,} bytes into it"
            )
    return None


def _refuse_non_images(ds: Dataset, truncation: str | None) -> None:
    sop_class = _sop_class(ds)
    modality = (_text(ds, "Modality") or "").upper()
    what = (
        f"DICOM {sop_class.name if sop_class else 'object of unknown SOP class'} "
        f"(modality {modality or 'not given'})"
    )
    if "PixelData" not in ds:
        cut = f" (the file is truncated: {truncation})" if truncation else ""
        raise NotAnImage(f"{what} has no pixel data{cut}; upload a radiograph image")
    kind = _NON_IMAGE_SOP_CLASSES.get(sop_class) or _NON_IMAGE_MODALITIES.get(modality)
    if kind:
        raise NotAnImage(f"{what} holds a {kind}, not a radiograph")


def _sop_class(ds: Dataset) -> UID | None:
    uid = _text(ds, "SOPClassUID") or _text(_file_meta(ds), "MediaStorageSOPClassUID")
    return UID(uid) if uid else None


def _read_header(ds: Dataset) -> _PixelHeader:
    frames = _int(ds, "NumberOfFrames", default=1)
    if frames > 1:
        raise MultiFrameImage(f"DICOM image has {frames} frames; upload a single radiograph")
    header = _PixelHeader(
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        samples=_int(ds, "SamplesPerPixel", default=1),
        bits_allocated=_int(ds, "BitsAllocated"),
        bits_stored=_int(ds, "BitsStored"),
        photometric=(_text(ds, "PhotometricInterpretation") or "").upper(),
    )
    _check_sample_format(header, frames)
    return header


def _check_sample_format(header: _PixelHeader, frames: int) -> None:
    if frames < 1 or header.rows < 1 or header.columns < 1:
        raise CorruptImage(
            f"DICOM image claims {frames} frame(s) of {header.rows}x{header.columns} pixels"
        )
    if header.bits_allocated not in (8, 16):
        raise UnsupportedFormat(
            f"DICOM pixels of {header.bits_allocated} allocated bits are not supported; "
            "radiographs use 8 or 16"
        )
    if not 1 <= header.bits_stored <= header.bits_allocated:
        raise CorruptImage(
            f"BitsStored {header.bits_stored} does not fit BitsAllocated {header.bits_allocated}"
        )
    if header.photometric == "PALETTE COLOR":
        raise UnsupportedFormat("PALETTE COLOR DICOM is pseudo-colour, not a radiograph")
    expected = _GREY if header.samples == 1 else _COLOUR if header.samples == 3 else ()
    if header.photometric not in expected:
        raise UnsupportedFormat(
            f"photometric interpretation {header.photometric or '(missing)'} with "
            f"{header.samples} samples per pixel is not supported"
        )


# --- pixel data ----------------------------------------------------------------------------------


def _transfer_syntax(ds: Dataset) -> UID:
    syntax = _text(_file_meta(ds), "TransferSyntaxUID")
    if syntax:
        return UID(syntax)
    # No file meta group: pydicom inferred the (necessarily native) encoding from the first element.
    implicit_vr, little_endian = ds.original_encoding
    if little_endian is False:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if implicit_vr else ExplicitVRLittleEndian


def _decoder(syntax: UID, header: _PixelHeader) -> Decoder:
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise UnsupportedFormat(
            f"DICOM transfer syntax {syntax.name} ({syntax}) cannot be decoded"
        ) from None
    if not decoder.is_available:
        raise UnsupportedFormat(
            f"no installed decoder for DICOM transfer syntax {syntax.name} ({syntax})"
        )
    # gdcm and Pillow both refuse 12-bit JPEG; only pylibjpeg-libjpeg (the GPL extra) reads it.
    if (
        syntax == JPEGExtended12Bit
        and header.bits_stored > 8
        and "pylibjpeg" not in decoder.available_plugins
    ):
        raise UnsupportedFormat(
            f"DICOM transfer syntax {syntax.name} ({syntax}) with {header.bits_stored}-bit "
            "samples needs the optional pylibjpeg-libjpeg decoder"
        )
    return decoder


def _decode_stored(ds: Dataset, header: _PixelHeader, decoder: Decoder) -> np.ndarray:
    if decoder.is_native:
        _check_native_length(ds, header)
    else:
        _check_codestream_header(ds, header, decoder.UID)
    try:
        stored, _ = decoder.as_array(ds, index=0, decoding_plugin=_plugin(decoder))
    except Exception as exc:  # each codec plugin reports corrupt data in its own way
        message = " ".join(str(exc).split())
        raise CorruptImage(f"cannot decode {decoder.UID.name} pixel data: {message}") from exc
    shape = (header.rows, header.columns) + ((3,) if header.samples == 3 else ())
    if stored.shape != shape:
        raise CorruptImage(f"decoded pixel data has shape {stored.shape}, header says {shape}")
    return stored


def _plugin(decoder: Decoder) -> str:
    """One plugin per transfer syntax, no fallback: pydicom would otherwise pass data that the
    first plugin rejected as corrupt on to the next one, and GDCM crashes the process (SIGSEGV)
    on some corrupt JPEG, so it is used only where nothing else reads the syntax."""
    available = decoder.available_plugins
    return next((name for name in _PLUGIN_PREFERENCE if name in available), "")


def _check_native_length(ds: Dataset, header: _PixelHeader) -> None:
    try:
        actual = len(ds.PixelData)
    except Exception as exc:  # the deferred read of a damaged element
        raise CorruptImage(f"unreadable DICOM pixel data: {exc}") from exc
    # YBR_FULL_422 stores two samples per pixel: full-rate luma, half-rate chroma pairs.
    samples = 2 if header.photometric == "YBR_FULL_422" else header.samples
    expected = header.rows * header.columns * samples * header.bits_allocated // 8
    # Longer pixel data is trailing padding that pydicom drops.
    if actual < expected:
        raise CorruptImage(f"truncated DICOM pixel data: {actual:,} of {expected:,} bytes")


def _check_codestream_header(ds: Dataset, header: _PixelHeader, syntax: UID) -> None:
    """Codecs allocate what the compressed stream declares, not what the DICOM header says, so a
    small upload could claim gigapixels there; and GDCM, the only JPEG Lossless decoder here,
    crashes the process (SIGSEGV) on some impossible frame headers."""
    if syntax in JPEG2000TransferSyntaxes:
        read_header = _j2k_frame_header
    elif syntax in JPEGTransferSyntaxes or syntax in JPEGLSTransferSyntaxes:
        read_header = _jpeg_frame_header
    else:
        return  # RLE output is sized from the DICOM header
    try:
        frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    except Exception as exc:  # broken item or fragment structure
        raise CorruptImage(f"unreadable {syntax.name} fragments: {exc}") from exc
    declared = read_header(frame)
    if declared is None:
        raise CorruptImage(f"{syntax.name} frame has no readable frame header")
    expected_size = (header.columns, header.rows)
    if declared.size != expected_size or declared.components != header.samples:
        raise CorruptImage(
            f"{syntax.name} frame declares {declared.components} component(s) of "
            f"{declared.size[0]}x{declared.size[1]} pixels; the DICOM header says "
            f"{header.samples} of {header.columns}x{header.rows}"
        )
    if not 1 <= declared.precision <= 16:
        raise CorruptImage(f"{syntax.name} frame declares {declared.precision}-bit samples")


@dataclass(frozen=True)
class _FrameHeader:
    size: tuple[int, int]  # (width, height)
    components: int
    precision: int


def _jpeg_frame_header(frame: bytes) -> _FrameHeader | None:
    """From the SOFn (or JPEG-LS SOF55) segment: marker, length, P, Y, X, Nf."""
    if not frame.startswith(b"\xff\xd8"):
        return None
    offset = 2
    while offset + 4 <= len(frame):
        if frame[offset] != 0xFF:
            return None
        marker = frame[offset + 1]
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        if marker in _JPEG_FRAME_MARKERS:
            if offset + 10 > len(frame):
                return None
            precision, height, width, components = struct.unpack_from(">BHHB", frame, offset + 4)
            return _FrameHeader((width, height), components, precision)
        (length,) = struct.unpack_from(">H", frame, offset + 2)
        offset += 2 + length
    return None


def _j2k_frame_header(frame: bytes) -> _FrameHeader | None:
    """From the SIZ segment after SOC (found also inside a JP2 wrapper): marker, Lsiz, Rsiz,
    image and tile geometry (eight 32-bit values), Csiz, then Ssiz of the first component."""
    start = frame.find(b"\xff\x4f\xff\x51")
    if start < 0 or start + 43 > len(frame):
        return None
    x_size, y_size, x_offset, y_offset = struct.unpack_from(">IIII", frame, start + 8)
    components, sample_size = struct.unpack_from(">HB", frame, start + 40)
    return _FrameHeader(
        (x_size - x_offset, y_size - y_offset), components, (sample_size & 0x7F) + 1
    )


def _to_unit_range(stored: np.ndarray, ds: Dataset, header: _PixelHeader) -> np.ndarray:
    if header.samples == 3:
        full_scale = 2**header.bits_stored - 1
        return np.clip(luminance(stored) / full_scale, 0, 1)
    unit = _voi(_modality(stored, ds), ds).astype(np.float32, copy=False)
    if header.photometric == "MONOCHROME1":
        np.subtract(1, unit, out=unit)
    return np.clip(unit, 0, 1, out=unit)


# --- modality and VOI transforms -----------------------------------------------------------------


def _modality(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    lut = _lut(ds, "ModalityLUTSequence")
    if lut:
        first_mapped, table, _ = lut
        return _apply_lut(stored, first_mapped, table)
    slope = _float(ds, "RescaleSlope", default=1.0)
    intercept = _float(ds, "RescaleIntercept", default=0.0)
    if slope == 0:
        raise CorruptImage("RescaleSlope 0 would flatten the image")
    # float32 holds 16-bit stored values exactly and halves the memory of float64.
    return stored.astype(np.float32) * slope + intercept


def _voi(values: np.ndarray, ds: Dataset) -> np.ndarray:
    lut = _lut(ds, "VOILUTSequence")
    if lut:
        first_mapped, table, bits = lut
        return _apply_lut(values, first_mapped, table) / (2**bits - 1)
    window = _first_window(ds)
    if window is None:
        return _percentile_window(values)
    center, width, function = window
    if function == "SIGMOID":  # PS3.3 C.11.2.1.3.1
        return expit(4 * (values - center) / width)
    if function == "LINEAR_EXACT":  # PS3.3 C.11.2.1.3.2
        return (values - center) / width + 0.5
    if width == 1:  # the LINEAR formula degenerates to a threshold
        return (values > center - 0.5).astype(np.float32)
    return (values - (center - 0.5)) / (width - 1) + 0.5  # PS3.3 C.11.2.1.2.1


def _first_window(ds: Dataset) -> tuple[float, float, str] | None:
    """The first window, or None where it is absent or unusable (a width of 0 is common in the
    wild and means "no window")."""
    center = _first_number(_get(ds, "WindowCenter"))
    width = _first_number(_get(ds, "WindowWidth"))
    if center is None or width is None:
        return None
    function = (_text(ds, "VOILUTFunction") or "LINEAR").upper()
    if function not in ("SIGMOID", "LINEAR_EXACT"):
        function = "LINEAR"  # the default, also for values the standard does not define
    usable = width >= 1 if function == "LINEAR" else width > 0
    return (center, width, function) if usable else None


def _percentile_window(values: np.ndarray) -> np.ndarray:
    # Python floats keep the arithmetic in float32 (NumPy scalars would promote it to float64).
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    if high <= low:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    return (values - low) / (high - low)


def _lut(ds: Dataset, keyword: str) -> tuple[int, np.ndarray, int] | None:
    """(first mapped input value, table as float32, bits per entry) from the first item of the
    LUT sequence `keyword`, or None where there is none."""
    try:
        items = ds.get(keyword)
        if not items:
            return None
        entries, first_mapped, bits = (int(v) for v in items[0].LUTDescriptor)
        table = _lut_table(items[0].LUTData, little_endian=ds.original_encoding[1] is not False)
    except Exception as exc:  # missing or malformed LUT elements
        raise CorruptImage(f"malformed DICOM {keyword}: {exc}") from exc
    entries = entries or 65536  # PS3.3 C.11.1.1.1: 0 means 2**16 entries
    if not 1 <= bits <= 16 or len(table) < entries:
        raise CorruptImage(
            f"DICOM lookup table claims {entries} entries of {bits} bits, holds {len(table)}"
        )
    return first_mapped, table[:entries], bits


def _lut_table(raw: Any, little_endian: bool) -> np.ndarray:
    if isinstance(raw, bytes | bytearray):  # OW: 16-bit words in the dataset's byte order
        return np.frombuffer(raw, dtype="<u2" if little_endian else ">u2").astype(np.float32)
    values = raw if isinstance(raw, Sequence) else [raw]  # US, one or many values
    return np.asarray(values, dtype=np.float32)


def _apply_lut(values: np.ndarray, first_mapped: int, table: np.ndarray) -> np.ndarray:
    # Inputs below the first mapped value take the first entry, those past the end the last.
    index = np.clip(np.rint(values) - first_mapped, 0, len(table) - 1).astype(np.intp)
    return table[index]


# --- metadata ------------------------------------------------------------------------------------


def _metadata(ds: Dataset, header: _PixelHeader, syntax: UID) -> ImageMetadata:
    return ImageMetadata(
        format="dicom",
        width=header.columns,
        height=header.rows,
        bits_stored=header.bits_stored,
        pixel_spacing_mm=_pixel_spacing(ds),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        modality=_text(ds, "Modality"),
        body_part=_text(ds, "BodyPartExamined"),
        laterality=_laterality(ds),
        view_position=_text(ds, "ViewPosition"),
        acquisition_date=acquisition_date(ds),
        patient_id=_text(ds, "PatientID"),
        patient_sex=_text(ds, "PatientSex"),
        patient_age_years=_age_years(_text(ds, "PatientAge")),
        photometric_interpretation=header.photometric,
        transfer_syntax_uid=str(syntax),
    )


def _laterality(ds: Dataset) -> str | None:
    # Image laterality first: a series-level Laterality can be absent or "U" for paired organs.
    for keyword in ("ImageLaterality", "Laterality"):
        side = (_text(ds, keyword) or "").upper()
        if side in ("L", "LEFT"):
            return "L"
        if side in ("R", "RIGHT"):
            return "R"
    return None


def file_acquisition_date(path) -> date | None:
    """The date a DICOM file's image was acquired (or its content made, or its study), read from
    the header alone."""
    return acquisition_date(pydicom.dcmread(path, stop_before_pixels=True))


def acquisition_date(ds: Dataset) -> date | None:
    for keyword in ("AcquisitionDate", "ContentDate", "StudyDate"):
        text = _text(ds, keyword) or ""
        if re.fullmatch(r"\d{8}", text):
            try:
                return datetime.strptime(text, "%Y%m%d").date()
            except ValueError:
                continue
    return None


def _age_years(text: str | None) -> float | None:
    match = _AGE.fullmatch((text or "").upper())
    if match is None:
        return None
    return int(match[1]) * _AGE_UNIT_YEARS[match[2]]


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    low, high = _PLAUSIBLE_SPACING_MM
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = _get(ds, keyword)
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
            row, column = (_to_float(v) for v in value)
            if all(v is not None and low <= v <= high for v in (row, column)):
                return row, column
    return None


# --- element access ------------------------------------------------------------------------------


def _get(ds: Dataset, keyword: str) -> Any:
    # pydicom converts values lazily, so a malformed element only fails when read; an optional
    # element that cannot be read counts as absent.
    try:
        return ds.get(keyword)
    except Exception:
        return None


def _file_meta(ds: Dataset) -> Dataset:
    return getattr(ds, "file_meta", None) or Dataset()


def _text(ds: Dataset, keyword: str) -> str | None:
    value = _get(ds, keyword)
    text = str(value).strip() if value is not None else ""
    # By the element's VR in the standard, not the one the file declares, which may be any.
    longest = _VR_MAX_CHARS.get(dictionary_VR(tag_for_keyword(keyword)), _OTHER_VR_MAX_CHARS)
    if len(text) > longest or not text.isprintable():
        return None
    return text or None


def _quoted(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _QUOTED_CHARS else f"{text[:_QUOTED_CHARS]}..."


def _to_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if isfinite(number) else None


def _first_number(value: Any) -> float | None:
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0] if len(value) else None
    return _to_float(value)


def _float(ds: Dataset, keyword: str, default: float) -> float:
    value = _get(ds, keyword)
    if value is None or value == "":
        return default
    number = _to_float(value)
    if number is None:
        raise CorruptImage(f"DICOM {keyword} {_quoted(value)} is not a number")
    return number


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = _get(ds, keyword)
    if value is None or value == "":
        if default is None:
            raise CorruptImage(f"DICOM image lacks the required {keyword}")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CorruptImage(f"DICOM {keyword} {_quoted(value)} is not an integer") from None
