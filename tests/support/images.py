"""Image files for the tests and benchmarks, written in memory: DICOM from pydicom directly (any
encoding, any element) or through the phantom cohort's writer (the tags of a real knee study),
PNG, JPEG and TIFF from Pillow, and the damage done to them on purpose (headers that claim other
sizes, codestreams patched, zeros that deflate to almost nothing)."""

from __future__ import annotations

import struct
import tempfile
import zlib
from collections.abc import Callable
from datetime import date
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import (
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

from training.phantom.dicom import Encoding, Study, write_dicom

# --- DICOM ---------------------------------------------------------------------------------------


def dicom_bytes(
    stored: np.ndarray,
    syntax: UID = ExplicitVRLittleEndian,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    preamble: bool = True,
    **elements: object,
) -> bytes:
    """A DX image holding `stored` (uint8/uint16/int16, (H, W) or (H, W, 3)) as pixel data, with
    these elements besides (or instead of the ones written here)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape[:2]
    ds.SamplesPerPixel = 3 if stored.ndim == 3 else 1
    if stored.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(stored.dtype.kind == "i")
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if syntax.is_compressed:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(syntax, stored)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
        order = "<" if syntax.is_little_endian else ">"
        ds.PixelData = stored.astype(stored.dtype.newbyteorder(order)).tobytes()
    if preamble:
        return saved(ds)
    out = BytesIO()
    del ds.file_meta
    pydicom.dcmwrite(
        out,
        ds,
        implicit_vr=syntax.is_implicit_VR,
        little_endian=syntax.is_little_endian,
        enforce_file_format=False,
    )
    return out.getvalue()


def saved(ds: Dataset) -> bytes:
    """The dataset as a DICOM file (preamble and file meta information)."""
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def phantom_dicom(
    pixels: np.ndarray,
    key: str,
    encoding: Encoding = Encoding(ExplicitVRLittleEndian, "MONOCHROME2", False),  # noqa: B008
    **study: object,
) -> bytes:
    """`pixels` (uint16 display values) as the phantom cohort writes a DX knee study: a woman of
    60, right knee, 0.3 mm pixels, unless `study` says otherwise (any field of
    training.phantom.dicom.Study). `key` names the person and makes the UIDs, so the same key
    gives the same file."""
    fields = {
        "person_id": key,
        "sex": "F",
        "age_years": 60,
        "side": "R",
        "acquired": date(2020, 1, 1),
        "modality": "DX",
        "view": "PA",
        "site": "test",
        "pixel_spacing_mm": 0.3,
        "uid_key": key,
    }
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "image.dcm"
        write_dicom(path, pixels, Study(**(fields | study)), encoding)
        return path.read_bytes()


def with_private_zeros(data: bytes, size: int) -> bytes:
    """The same DICOM file with `size` zero bytes in a private element: a deflated file stays a
    few kilobytes however large `size` is."""
    ds = pydicom.dcmread(BytesIO(data))
    ds.add_new(0x00091010, "OB", bytes(size))
    return saved(ds)


def with_patched_frame(data: bytes, patch: Callable[[bytearray], None]) -> bytes:
    """The same encapsulated DICOM file with its one frame's codestream changed by `patch`."""
    ds = pydicom.dcmread(BytesIO(data))
    frame = bytearray(get_frame(ds.PixelData, 0, number_of_frames=1))
    patch(frame)
    ds.PixelData = encapsulate([bytes(frame)])
    return saved(ds)


def j2k_claims(side: int) -> Callable[[bytearray], None]:
    """A patch for a JPEG 2000 codestream: its SIZ marker says side x side pixels."""

    def patch(frame: bytearray) -> None:
        siz = frame.index(b"\xff\x51")  # Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz after Lsiz, Rsiz
        struct.pack_into(">IIIIII", frame, siz + 6, side, side, 0, 0, side, side)

    return patch


# --- PNG, JPEG, TIFF -----------------------------------------------------------------------------


def png_bytes(pixels: np.ndarray, mode: str | None = None, **options: object) -> bytes:
    out = BytesIO()
    image = Image.fromarray(pixels) if mode is None else Image.fromarray(pixels).convert(mode)
    image.save(out, "PNG", **options)
    return out.getvalue()


def jpeg_bytes(pixels: np.ndarray, quality: int = 90, **options: object) -> bytes:
    out = BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=quality, **options)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int, idat: bytes) -> bytes:
    """An 8-bit greyscale PNG whose header says width x height, with this (compressed) image
    data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )
