"""The DICOM twin of a phantom image: the tags a real CR or DX knee study carries, in the pixel
encodings and transfer syntaxes that real archives hold.

Every variant decodes to exactly the PNG twin's pixels (value / 65535): the stored values, the modality
LUT and the first VOI window are chosen together so that the window maps the stored range linearly
onto [0, 1]. Only the lossy JPEG 2000 variant differs, by its compression error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")

# (transfer syntax, share of images); lossy JPEG 2000 is kept rare, as in archives that allow it.
TRANSFER_SYNTAXES = (
    (ExplicitVRLittleEndian, 0.35),
    (ImplicitVRLittleEndian, 0.10),
    (RLELossless, 0.20),
    (JPEG2000Lossless, 0.15),
    (JPEGLSLossless, 0.12),
    (JPEG2000, 0.08),
)
LOSSY_PSNR_DB = 62.0
# Signed storage only where every encoder handles it; MONOCHROME1 stays unsigned like real CR.
SIGNED_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless)


@dataclass(frozen=True)
class Encoding:
    transfer_syntax: UID
    photometric: str  # "MONOCHROME1" or "MONOCHROME2"
    signed: bool


def sample_encoding(rng: np.random.Generator) -> Encoding:
    syntaxes, shares = zip(*TRANSFER_SYNTAXES, strict=True)
    syntax = syntaxes[int(rng.choice(len(syntaxes), p=np.array(shares) / sum(shares)))]
    photometric = "MONOCHROME1" if rng.random() < 0.25 else "MONOCHROME2"
    signed = photometric == "MONOCHROME2" and syntax in SIGNED_SYNTAXES and rng.random() < 0.4
    return Encoding(syntax, photometric, signed)


@dataclass(frozen=True)
class Study:
    """Who and what the image shows, for the tags."""

    person_id: str
    sex: str
    age_years: float
    side: str
    acquired: date
    modality: str  # "CR" or "DX"
    view: str  # "PA" or "AP"
    site: str
    pixel_spacing_mm: float
    uid_key: str  # unique and stable per image: makes the UIDs deterministic


def write_dicom(path: Path, pixels: np.ndarray, study: Study, encoding: Encoding) -> None:
    """Write `pixels` (uint16 display values, bone bright) as a DICOM file."""
    ds = _dataset(study, encoding, pixels.shape)
    stored = pixels.astype(np.uint16)
    if encoding.photometric == "MONOCHROME1":
        stored = np.uint16(65535) - stored
    if encoding.signed:
        stored = (stored.astype(np.int32) - 32768).astype(np.int16)
        ds.RescaleIntercept = 32768
    ds.PixelRepresentation = 1 if encoding.signed else 0

    if encoding.transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = encoding.transfer_syntax
        ds.PixelData = stored.tobytes()
    elif encoding.transfer_syntax == JPEG2000:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_15444_1"
        ds.compress(JPEG2000, stored, j2k_psnr=[LOSSY_PSNR_DB], generate_instance_uid=False)
    else:
        ds.compress(encoding.transfer_syntax, stored, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _dataset(study: Study, encoding: Encoding, shape: tuple[int, int]) -> Dataset:
    sop_class = CR_IMAGE_STORAGE if study.modality == "CR" else DX_IMAGE_STORAGE
    sop_instance = generate_uid(entropy_srcs=["image", study.uid_key])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = encoding.transfer_syntax

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", study.uid_key])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series", study.uid_key])
    ds.PatientName = f"PHANTOM^{study.person_id}"
    ds.PatientID = study.person_id
    ds.PatientSex = study.sex
    ds.PatientAge = f"{int(study.age_years):03d}Y"
    day = study.acquired.strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = day
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "093000"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = study.modality
    ds.Manufacturer = "radmatch phantom"
    ds.InstitutionName = study.site
    ds.BodyPartExamined = "KNEE"
    ds.ViewPosition = study.view
    ds.ImageLaterality = study.side
    ds.Laterality = study.side
    ds.PatientOrientation = ["L", "F"] if study.side == "R" else ["R", "F"]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PixelSpacing = [study.pixel_spacing_mm, study.pixel_spacing_mm]
    ds.ImagerPixelSpacing = [study.pixel_spacing_mm, study.pixel_spacing_mm]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = encoding.photometric
    ds.Rows, ds.Columns = shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.RescaleSlope = 1
    ds.RescaleIntercept = 0
    ds.RescaleType = "US"
    # Linear VOI window (PS3.3 C.11.2.1.2) that maps modality values 0..65535 exactly onto 0..1;
    # signed storage is shifted back into that range by the rescale intercept.
    ds.WindowCenter = 32768
    ds.WindowWidth = 65536
    ds.VOILUTFunction = "LINEAR"
    return ds
