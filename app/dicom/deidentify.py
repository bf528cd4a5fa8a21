"""De-identification of an export: PS3.15 Annex E's Basic Application Level Confidentiality
Profile with the Retain Longitudinal Temporal Information with Modified Dates Option, so that the
lab receiving a case can count the years between its radiographs without learning their dates.

dicognito does what it does well: UIDs, person names, the identifiers it knows, and dates, with
one Anonymizer per export, seeded at random and the seed kept nowhere, so that within an export
the same person has the same pseudonym and every date moves by the same offset, and no two
exports can be linked. What it leaves undone is done here, from the profile's table
(app/dicom/annex_e.py): the attributes to remove, empty or replace by a dummy, private
attributes, curves and overlays; and what the profile asks the result to say about itself
(PatientIdentityRemoved, the method and its codes). Its date offset is replaced by one of whole
days: an offset in hours moves a date with a time of day by one day more or less than a date
without, and the years between two images would no longer be exactly the same."""

from __future__ import annotations

import secrets
from importlib.metadata import version

from dicognito.anonymizer import Anonymizer
from dicognito.datetimeanonymizer import DateTimeAnonymizer
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from app.core.errors import Conflict
from app.dicom.annex_e import DUMMIED, EMPTIED, REMOVED, REMOVED_GROUPS

PROFILE = ("113100", "Basic Application Confidentiality Profile")
MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
METHOD = (
    "PS3.15 Annex E Basic Application Level Confidentiality Profile",
    MODIFIED_DATES[1],
    f"radmatch with dicognito {version('dicognito')}",
)
# dicognito's own range for its date offset, in whole days: back by two months to two years.
OFFSET_DAYS = (62, 730)
DUMMY = "ANONYMIZED"
_TEXT_VRS = frozenset({"AE", "AS", "CS", "LO", "LT", "SH", "ST", "UC", "UR", "UT"})
# AE titles and private data in the file meta group, which names the sending system.
_META_REMOVED = frozenset(
    Tag(number)
    for number in (
        0x00020016,  # Source Application Entity Title
        0x00020017,  # Sending Application Entity Title
        0x00020018,  # Receiving Application Entity Title
        0x00020100,  # Private Information Creator UID
        0x00020102,  # Private Information
    )
)


class Deidentifier:
    """One export's de-identification. Every object of an export goes through the same one."""

    def __init__(self) -> None:
        self.anonymizer = Anonymizer(seed=secrets.token_hex(32))
        low, high = OFFSET_DAYS
        self.offset_days = low + secrets.randbelow(high - low + 1)
        # Handlers added later are asked first: this one takes every DA and DT element.
        self.anonymizer.add_element_handler(DateTimeAnonymizer(-24 * self.offset_days))

    def __call__(self, ds: Dataset, name: str, subject: str) -> None:
        """De-identify `ds` in place. `name` says which object it is in a refusal; `subject` is
        who radmatch knows it shows, given to dicognito as the PatientID where the object has
        none, so that such objects still share a pseudonym per person and no more."""
        if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
            raise Conflict(
                f"{name} has burned-in annotation (BurnedInAnnotation YES): de-identification "
                "cannot clean the pixels, so the case can only be exported without it"
            )
        ds.walk(_apply_table)
        ds.ensure_file_meta()
        for tag in _META_REMOVED & set(ds.file_meta.keys()):
            del ds.file_meta[tag]
        if not ds.get("PatientID"):
            ds.PatientID = subject
        # The preamble is free for any use, and dual-format files keep a TIFF header there.
        ds.preamble = None
        self.anonymizer.anonymize(ds)
        declare(ds)


def _apply_table(dataset: Dataset, element: DataElement) -> None:
    tag = element.tag
    if tag.is_private or tag in REMOVED or any(tag.group in groups for groups in REMOVED_GROUPS):
        del dataset[tag]
    elif tag in EMPTIED:
        element.value = [] if element.VR == "SQ" else None
    elif tag in DUMMIED:
        if element.VR in _TEXT_VRS:
            element.value = DUMMY
        else:
            del dataset[tag]


def declare(ds: Dataset) -> None:
    """What the profile asks a de-identified object to say of itself (PS3.15 E.1.1, E.3.6)."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = list(METHOD)
    ds.DeidentificationMethodCodeSequence = [_code(*PROFILE), _code(*MODIFIED_DATES)]
    ds.LongitudinalTemporalInformationModified = "MODIFIED"


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item
