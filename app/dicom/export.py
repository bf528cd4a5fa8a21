"""A case for another lab: a zip holding a DICOM File-set (a DICOMDIR at the root and each object
at a path the media standard allows, both written by pydicom's FileSet). It holds, for every
conclusion recorded in the case that the examiner may see, the query radiograph of its search and
the candidate's image that search compared, each once. A DICOM original goes in byte for byte as
stored, so its sha256 is the one the case report and audit log name; a PNG, JPEG or TIFF goes in
as a Secondary Capture image of its pixels (app/dicom/capture.py). De-identified on request
(app/dicom/deidentify.py), every object is rewritten and no original goes in byte for byte.

Nothing is written outside temporary folders: pydicom stages the objects in one, whose files are
deleted when the export is done (the empty folder goes with the FileSet object), and the file-set
is written to another, removed once zipped into memory. The export is an audit entry naming the
number of objects, whether they were de-identified and the zip's sha256."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from io import BytesIO
from pathlib import Path
from tempfile import TemporaryDirectory
from zipfile import ZIP_DEFLATED, ZipFile

import pydicom
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet, RecordNode
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cases.service import audit, conclusions_for, live_case
from app.core.errors import ClientError, Conflict, Gone, Unprocessable
from app.dicom.capture import Source, secondary_capture
from app.dicom.deidentify import Deidentifier
from app.serving.matcher import Matcher
from app.storage.originals import sha256_of
from app.storage.records import Records
from app.storage.tables import Case, Image, Person, Search, SearchResult
from model.decode import sniff_format

_PREAMBLE_BYTES = 128


@dataclass(frozen=True)
class CaseExport:
    data: bytes  # the zip
    filename: str
    objects: int
    sha256: str


def export_case(
    *,
    records: Records,
    matcher: Matcher,
    case_id: int,
    key_id: int,
    deidentify: bool,
) -> CaseExport:
    """The case's zip, as the key may see the case (a blind reviewer's export leaves out the
    conclusions they may not see yet, as the case page does)."""
    with records.sessions() as session:
        sources = export_sources(session, live_case(session, case_id), key_id)
    deidentifier = Deidentifier() if deidentify else None
    fileset = FileSet()
    try:
        for source in sources:
            add_object(fileset, source, stored_original(records, source), matcher, deidentifier)
        objects = len(fileset)
        data = zipped(fileset)
    finally:
        fileset.clear()  # deletes the copies pydicom staged
    digest = sha256_of(data)
    with records.sessions.begin() as session:
        audit(
            session,
            key_id,
            "case.export",
            case_id,
            objects=objects,
            deidentified=deidentify,
            sha256=digest,
        )
    return CaseExport(data, f"case-{case_id}.zip", objects, digest)


def export_sources(session: Session, case: Case, key_id: int) -> list[Source]:
    """The originals of the conclusions' searches and candidates, in the order the conclusions
    were recorded: the same original for the same person or case once."""
    seen = conclusions_for(session, case, key_id)
    pairs = list(dict.fromkeys((item["search_id"], item["person_id"]) for item in seen["items"]))
    if not pairs:
        hidden = seen["hidden"]
        raise Conflict(
            "nothing to export: the case has no conclusions"
            + (
                f" you may see yet (hidden until you record your blind review: {hidden})"
                if hidden
                else ""
            )
        )
    search_ids = {search_id for search_id, _ in pairs}
    searches = {
        search.id: search
        for search in session.scalars(select(Search).where(Search.id.in_(search_ids)))
    }
    compared = {
        (row.search_id, row.person_id): gallery_source(row.Image, row.external_ref)
        for row in session.execute(
            select(SearchResult.search_id, SearchResult.person_id, Image, Person.external_ref)
            .join(Image, Image.id == SearchResult.image_id)
            .join(Person, Person.id == Image.person_id)
            .where(SearchResult.search_id.in_(search_ids))
        )
    }
    sources: dict[tuple[str, str], Source] = {}
    for search_id, person_id in pairs:
        for source in (
            query_source(searches[search_id], case.number),
            compared[search_id, person_id],
        ):
            sources.setdefault((source.sha256, source.subject), source)
    return list(sources.values())


def query_source(search: Search, case_number: str) -> Source:
    stored_date = search.parameters.get("query_date")
    return Source(
        name=f"the query of search {search.id}",
        sha256=search.query_sha256,
        subject=case_number,
        acquired=date.fromisoformat(stored_date) if stored_date else None,
        pixel_spacing_mm=search.parameters.get("pixel_spacing_mm"),
    )


def gallery_source(image: Image, external_ref: str) -> Source:
    return Source(
        name=f"image {image.id}",
        sha256=image.sha256,
        subject=external_ref,
        acquired=image.acquisition_date,
        side=image.side,
        body_part=image.body_part,
        pixel_spacing_mm=image.pixel_spacing_mm,
        purged=image.original_purged_at is not None,
    )


def stored_original(records: Records, source: Source) -> bytes:
    if source.purged or not records.originals.exists(source.sha256):
        raise Gone(
            f"the original of {source.name} was purged, so the case cannot be exported whole"
        )
    return records.originals.read(source.sha256)


def add_object(
    fileset: FileSet,
    source: Source,
    data: bytes,
    matcher: Matcher,
    deidentifier: Deidentifier | None,
) -> None:
    """Stage the original's object in the file-set, unless the same instance is there already
    (the same DICOM object through another conclusion, or sent twice in two encodings)."""
    if sniff_format(data) == "dicom":
        ds = stored_dicom(data, source)
        as_stored = deidentifier is None and data[_PREAMBLE_BYTES : _PREAMBLE_BYTES + 4] == b"DICM"
    else:
        try:
            ds = secondary_capture(matcher.decode(data), source)
        except ClientError as error:
            raise type(error)(f"{source.name} no longer decodes: {error.message}") from None
        as_stored = False
    if deidentifier is not None:
        deidentifier(ds, source.name, source.subject)
    if any(instance.SOPInstanceUID == ds.SOPInstanceUID for instance in fileset):
        return
    instance = fileset.add_custom(ds, directory_records(ds, source.subject))
    if as_stored:
        # pydicom staged its own encoding of the dataset; the original's bytes replace it.
        Path(instance.path).write_bytes(data)


def stored_dicom(data: bytes, source: Source) -> Dataset:
    """A stored DICOM original, with the file meta information a file-set's files need: a file
    written without it (older archives) is told its transfer syntax as it was read."""
    ds = pydicom.dcmread(BytesIO(data), force=True)
    if not ds.get("SOPClassUID") or not ds.get("SOPInstanceUID"):
        raise Unprocessable(
            f"{source.name} is a DICOM object without a SOP Class UID or SOP Instance UID, "
            "which a DICOM file-set cannot hold"
        )
    ds.ensure_file_meta()
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little_endian = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else ExplicitVRLittleEndian
            if little_endian
            else ExplicitVRBigEndian
        )
    return ds


def directory_records(ds: Dataset, subject: str) -> RecordNode:
    """The PATIENT, STUDY, SERIES and IMAGE records of an object (PS3.3 F.5), as its IMAGE
    record with the others above it. Where the object leaves a record's key empty the record
    says who radmatch knows it shows, or a UID derived from the object's own."""
    sop_instance = ds.SOPInstanceUID
    levels = {
        "PATIENT": {
            "PatientID": ds.get("PatientID") or subject,
            "PatientName": ds.get("PatientName") or "",
        },
        "STUDY": {
            "StudyDate": ds.get("StudyDate"),
            "StudyTime": ds.get("StudyTime"),
            "StudyDescription": ds.get("StudyDescription"),
            "StudyInstanceUID": ds.get("StudyInstanceUID")
            or generate_uid(entropy_srcs=["study", sop_instance]),
            "StudyID": ds.get("StudyID"),
            "AccessionNumber": ds.get("AccessionNumber"),
        },
        "SERIES": {
            "Modality": ds.get("Modality") or "OT",
            "SeriesInstanceUID": ds.get("SeriesInstanceUID")
            or generate_uid(entropy_srcs=["series", sop_instance]),
            "SeriesNumber": ds.get("SeriesNumber"),
        },
        "IMAGE": {
            "InstanceNumber": ds.get("InstanceNumber"),
            "ReferencedSOPClassUIDInFile": ds.SOPClassUID,
            "ReferencedSOPInstanceUIDInFile": sop_instance,
            "ReferencedTransferSyntaxUIDInFile": ds.file_meta.TransferSyntaxUID,
        },
    }
    node = None
    for kind, elements in levels.items():
        record = Dataset()
        record.DirectoryRecordType = kind
        if "SpecificCharacterSet" in ds:
            record.SpecificCharacterSet = ds.SpecificCharacterSet
        for keyword, value in elements.items():
            setattr(record, keyword, value)
        parent, node = node, RecordNode(record)
        if parent is not None:
            node.parent = parent
    return node


def zipped(fileset: FileSet) -> bytes:
    """The file-set written to a temporary folder, zipped with the paths it has there."""
    buffer = BytesIO()
    with TemporaryDirectory(prefix="radmatch-export-") as folder:
        fileset.write(folder)
        with ZipFile(buffer, "w", ZIP_DEFLATED) as archive:
            for path in sorted(Path(folder).rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()
