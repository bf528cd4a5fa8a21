"""Image files for the tests and benchmarks, written in memory: DICOM from pydicom directly (any
encoding, any element) or through the phantom cohort's writer (the tags of a real knee study),
the other DICOM objects a PACS sends along with radiographs (CT, SR, PDF, multi-frame, secondary
capture), PNG, JPEG and TIFF from Pillow, and the damage done to them on purpose (headers that
claim other sizes, codestreams patched, zeros that deflate to almost nothing)."""

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
    BasicTextSRStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
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


# --- Other DICOM objects --------------------------------------------------------------------------
# What a PACS sends besides radiographs. Each writer takes `key` as the PatientID and makes its
# UIDs from the key and its SOP class, so the same call gives the same file and no two writers
# share an instance; `elements` (DICOM keywords) are set last, over the ones written here.

OBJECT_SIDE = 96
FRAME_TIME = 0x00181063  # (0018,1063): the frames follow each other in time


def ct_image(key: str, **elements: object) -> bytes:
    """One axial CT slice (CT Image Storage), 12-bit stored values in Hounsfield units after the
    rescale."""
    ds = object_dataset(CTImageStorage, key, "CT")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.FrameOfReferenceUID = keyed_uid("frame of reference", CTImageStorage, key)
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "KNEE"
    ds.KVP = 120
    ds.AcquisitionNumber = 1
    ds.SliceThickness = 1.0
    ds.SliceLocation = 0.0
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    set_pixels(ds, keyed_pixels(key, (OBJECT_SIDE, OBJECT_SIDE), 4096), bits_stored=12)
    return object_file(ds, elements)


def structured_report(key: str, **elements: object) -> bytes:
    """A Basic Text SR: one finding in words, no pixel data."""
    ds = object_dataset(BasicTextSRStorage, key, "SR")
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [coded_concept("18748-4", "LN", "Diagnostic imaging report")]
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.PerformedProcedureCodeSequence = []
    finding = Dataset()
    finding.RelationshipType = "CONTAINS"
    finding.ValueType = "TEXT"
    finding.ConceptNameCodeSequence = [coded_concept("121071", "DCM", "Finding")]
    finding.TextValue = f"Knee of {key}: no acute finding."
    ds.ContentSequence = [finding]
    return object_file(ds, elements)


def encapsulated_pdf(key: str, **elements: object) -> bytes:
    """A one-page PDF (Encapsulated PDF Storage): a scanned request form, say."""
    page = Image.fromarray(keyed_pixels(key, (OBJECT_SIDE, OBJECT_SIDE), 256).astype(np.uint8))
    out = BytesIO()
    # No dates in the PDF's info dictionary, so the same key gives the same bytes.
    page.save(out, "PDF", title=key, creationDate=None, modDate=None)
    document = out.getvalue()
    ds = object_dataset(EncapsulatedPDFStorage, key, "DOC")
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = f"Request form {key}"
    ds.ConceptNameCodeSequence = []
    ds.AcquisitionDateTime = ""
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(document)
    ds.EncapsulatedDocument = document + b"\0" * (len(document) % 2)
    return object_file(ds, elements)


def multiframe_dx(key: str, frames: int = 3, **elements: object) -> bytes:
    """A DX knee study (as `phantom_dicom` writes it) holding `frames` frames."""
    stack = keyed_pixels(key, (frames, OBJECT_SIDE, OBJECT_SIDE), 65536)
    ds = pydicom.dcmread(BytesIO(phantom_dicom(stack[0], key, uid_key=f"multi-frame {key}")))
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = FRAME_TIME
    ds.FrameTime = 100.0
    ds.PixelData = stack.astype("<u2").tobytes()
    return object_file(ds, elements)


def secondary_capture(pixels: np.ndarray, key: str, **elements: object) -> bytes:
    """`pixels` (uint8 or uint16, (H, W)) as a MONOCHROME2 Secondary Capture Image: a radiograph
    digitised from film, or a screenshot of one."""
    ds = object_dataset(SecondaryCaptureImageStorage, key, "OT")
    ds.ConversionType = "DF"
    ds.PatientOrientation = ""
    set_pixels(ds, pixels)
    return object_file(ds, elements)


def computed_radiography(pixels: np.ndarray, key: str, **elements: object) -> bytes:
    """`pixels` (uint16 display values) as a CR knee study (CR Image Storage), with the phantom
    cohort's tags (see `phantom_dicom`) and UIDs of its own."""
    ds = pydicom.dcmread(BytesIO(phantom_dicom(pixels, key, modality="CR", uid_key=f"CR {key}")))
    return object_file(ds, elements)


def object_dataset(sop_class: UID, key: str, modality: str) -> Dataset:
    """Patient, study, series and instance of an object, and its file meta information."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    instance = keyed_uid("instance", sop_class, key)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = instance
    ds.StudyInstanceUID = keyed_uid("study", sop_class, key)
    ds.SeriesInstanceUID = keyed_uid("series", sop_class, key)
    ds.PatientName = f"PHANTOM^{key}"
    ds.PatientID = key
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20200101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = modality
    ds.Manufacturer = "radmatch tests"
    return ds


def keyed_uid(level: str, sop_class: UID, key: str) -> UID:
    return generate_uid(entropy_srcs=[level, str(sop_class), key])


def keyed_pixels(key: str, shape: tuple[int, ...], levels: int) -> np.ndarray:
    """Noise in 0..levels-1 (uint16), the same for the same key."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return rng.integers(0, levels, size=shape, dtype=np.uint16)


def set_pixels(ds: Dataset, stored: np.ndarray, bits_stored: int | None = None) -> None:
    """The image pixel module for unsigned MONOCHROME2 `stored` values, (H, W)."""
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()


def coded_concept(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def object_file(ds: Dataset, elements: dict[str, object]) -> bytes:
    """The dataset with `elements` set, as a file whose meta information agrees with it."""
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return saved(ds)


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
