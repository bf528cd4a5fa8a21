"""What a received DICOM object is, read from its header alone: whether radmatch takes it (a
single-frame radiograph of an accepted storage SOP class), and whose it is. Every way in (C-STORE,
STOW-RS, a DICOMweb pull, a disc) asks this before anything is decoded or written."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)

from app.core.identifiers import EXTERNAL_REF_LENGTH, InvalidIdentifier, normalise_identifier

# The storage SOP classes of a projection radiograph. Secondary capture is how scanned films and
# converted PNG or JPEG radiographs travel; everything else (CT, MR, mammography, reports,
# presentation states, encapsulated documents) is refused with its name.
RADIOGRAPH_SOP_CLASSES = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)

# DICOM status codes of a refusal (PS3.4 B.2.3, PS3.18 FailureReason), shared by the C-STORE
# response and the STOW-RS response.
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

# PatientSex as the people table keeps it.
_SEX = {"F": "F", "M": "M", "O": "X"}


class Refused(Exception):
    """An object radmatch does not take, with the DICOM status a sender is answered with and the
    reason, for the sender's log and ours."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class DicomObject:
    """The header facts every intake path needs."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str | None
    modality: str | None
    patient_id: str | None
    issuer_of_patient_id: str | None
    patient_sex: str | None  # "F", "M" or "X"
    birth_year: int | None
    frames: int

    @property
    def kind(self) -> str:
        """The SOP class by name, as a refusal says it."""
        name = UID(self.sop_class_uid).name
        return name if name != self.sop_class_uid else f"SOP class {self.sop_class_uid}"

    def check_radiograph(self) -> None:
        """Raise Refused unless this is one single-frame radiograph radmatch can take."""
        if self.sop_class_uid not in RADIOGRAPH_SOP_CLASSES:
            raise Refused(
                SOP_CLASS_NOT_SUPPORTED,
                f"{self.kind} (modality {self.modality or 'not given'}) is not a projection "
                "radiograph: radmatch takes CR, DX and secondary capture images",
            )
        if self.frames != 1:
            raise Refused(
                DATASET_DOES_NOT_MATCH,
                f"{self.kind} {self.sop_instance_uid} has {self.frames} frames; radmatch matches "
                "single radiographs, so send each projection as its own object",
            )

    def person_ref(self, issuer: str) -> str:
        """The gallery person this object belongs to: its PatientID under an issuer (the
        object's own IssuerOfPatientID where it names one, else the one given)."""
        if not self.patient_id:
            raise Refused(
                DATASET_DOES_NOT_MATCH,
                f"{self.kind} {self.sop_instance_uid} has no PatientID; the gallery groups "
                "images into people by PatientID",
            )
        try:
            return normalise_identifier(
                f"{self.issuer_of_patient_id or issuer}:{self.patient_id}",
                what="IssuerOfPatientID:PatientID",
                max_length=EXTERNAL_REF_LENGTH,
            )
        except InvalidIdentifier as exc:
            raise Refused(
                DATASET_DOES_NOT_MATCH, f"{self.kind} {self.sop_instance_uid}: {exc}"
            ) from None


def read_object(data: bytes) -> DicomObject:
    """The object's header facts; Refused when the bytes are not a DICOM object with a SOP class
    and instance. Forced, because older files have no preamble and file meta (the decoder reads
    them too); bytes that are not DICOM at all name no SOP class and are refused for it."""
    try:
        ds = pydicom.dcmread(BytesIO(data), stop_before_pixels=True, force=True)
        return _facts(ds)
    except (InvalidDicomError, ValueError, TypeError, EOFError, KeyError) as error:
        raise Refused(CANNOT_UNDERSTAND, f"not a readable DICOM object: {error}") from None


def _facts(ds: Dataset) -> DicomObject:
    meta = getattr(ds, "file_meta", Dataset())
    sop_class = _text(ds, "SOPClassUID") or _text(meta, "MediaStorageSOPClassUID")
    sop_instance = _text(ds, "SOPInstanceUID") or _text(meta, "MediaStorageSOPInstanceUID")
    if not sop_class or not sop_instance:
        raise ValueError("it names no SOP class or SOP instance")
    birth = _text(ds, "PatientBirthDate")
    return DicomObject(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        modality=_text(ds, "Modality"),
        patient_id=_text(ds, "PatientID"),
        issuer_of_patient_id=_text(ds, "IssuerOfPatientID"),
        patient_sex=_SEX.get((_text(ds, "PatientSex") or "").upper()),
        birth_year=_year(birth),
        frames=_frames(ds),
    )


def _year(birth_date: str | None) -> int | None:
    year = int(birth_date[:4]) if birth_date and birth_date[:4].isdigit() else None
    return year if year is not None and 1850 <= year <= 2100 else None


def _frames(ds: Dataset) -> int:
    value = ds.get("NumberOfFrames")
    try:
        return int(value) if value not in (None, "") else 1
    except (TypeError, ValueError):
        return 0


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text[:64] or None
