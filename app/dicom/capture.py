"""A PNG, JPEG or TIFF radiograph as a DICOM object, for an export: a Secondary Capture Image of
its decoded pixels (MONOCHROME2, bone bright, 8 or 16 bits as the file had), with what radmatch
knows of it, the person or case it belongs to, the date, side, body part and pixel spacing. The
UIDs come from the original's sha256 and the person, so every export of it gives the same ones."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pydicom.valuerep import DSfloat

from model.image import DecodedImage

# Code String values (PS3.5 6.2): upper-case letters, digits, space and underscore, 16 at most.
_NOT_CODE_STRING = re.compile(r"[^A-Z0-9 _]")
_CODE_STRING_CHARS = 16


@dataclass(frozen=True)
class Source:
    """An original that goes into an export, and what radmatch knows of it."""

    name: str  # how a refusal names it: "image 12", "the query of search 5"
    sha256: str
    subject: str  # whose it is: the person's external_ref, or the case number for a query
    acquired: date | None = None
    side: str | None = None  # "L" or "R"
    body_part: str | None = None
    pixel_spacing_mm: float | None = None
    purged: bool = False

    def uid(self, level: str) -> str:
        return generate_uid(entropy_srcs=["radmatch export", level, self.sha256, self.subject])


def secondary_capture(decoded: DecodedImage, source: Source) -> Dataset:
    """The Secondary Capture Image object of a decoded raster radiograph."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = source.uid("instance")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"  # external refs and case numbers may be any Unicode
    ds.PatientName = ""
    ds.PatientID = source.subject
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = source.uid("study")
    ds.StudyDate = "" if source.acquired is None else source.acquired.strftime("%Y%m%d")
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.SeriesInstanceUID = source.uid("series")
    ds.Modality = "OT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ConversionType = "WSD"  # converted on a workstation, not digitized from film
    if source.side is not None:
        ds.ImageLaterality = source.side
    if source.body_part:
        ds.BodyPartExamined = code_string(source.body_part)
    if source.pixel_spacing_mm is not None:
        spacing = DSfloat(source.pixel_spacing_mm, auto_format=True)
        ds.PixelSpacing = [spacing, spacing]
    _set_pixels(ds, decoded)
    return ds


def code_string(text: str) -> str:
    """Free text as a Code String value: "hand/wrist" -> "HAND_WRIST"."""
    return _NOT_CODE_STRING.sub("_", text.strip().upper())[:_CODE_STRING_CHARS]


def _set_pixels(ds: Dataset, decoded: DecodedImage) -> None:
    # Decoding divided the stored values by their container's range, so multiplying back gives
    # them again; 1-bit and floating-point files take the nearest container.
    bits = 16 if decoded.metadata.bits_stored > 8 else 8
    stored = np.rint(decoded.pixels * (2**bits - 1)).astype(np.uint16 if bits == 16 else np.uint8)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = stored.tobytes()
