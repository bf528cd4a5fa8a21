"""One received DICOM object, by whatever way it came: checked from its header (a single-frame
radiograph of an accepted SOP class), then into a case's inbox or into the gallery as an image of
the person its PatientID names, through the same ingest path as an HTTP upload (sha256 first,
nothing half-written, audited). Every refusal is a `Refused` with the DICOM status the sender is
answered with and the reason."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.core.errors import ClientError, Conflict
from app.core.metrics import Metrics
from app.dicom.arrival import Arrival, Destination
from app.dicom.inbox import receive_for_case
from app.dicom.objects import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    OUT_OF_RESOURCES,
    DicomObject,
    Refused,
    read_object,
)
from app.gallery.images import ImageFields, ingest_image
from app.gallery.people import add_person
from app.serving.matcher import Matcher
from app.storage.records import Records
from app.storage.tables import Image, Person


@dataclass(frozen=True)
class Received:
    """What became of an accepted object: the row it is (new, or already there)."""

    sop_class_uid: str
    sop_instance_uid: str
    stored: bool  # False: the same object was there already
    image_id: int | None = None  # into the gallery
    person_id: int | None = None
    inbox_item_id: int | None = None  # into a case's inbox


def receive(
    *,
    records: Records,
    matcher: Matcher,
    metrics: Metrics,
    data: bytes,
    destination: Destination,
    arrival: Arrival,
    filename: str | None = None,
) -> Received:
    """Take one object; raise Refused, with the status to answer, for anything not taken.
    A refusal the sender can fix is permanent; OUT_OF_RESOURCES (no model, a full disk) is not,
    and the same object may be sent again later."""
    found = read_object(data)
    found.check_radiograph()
    try:
        if destination.case_id is not None:
            item, stored = receive_for_case(
                records=records,
                matcher=matcher,
                case_id=destination.case_id,
                data=data,
                arrival=arrival,
            )
            return Received(
                found.sop_class_uid, found.sop_instance_uid, stored, inbox_item_id=item.id
            )
        return _into_gallery(records, matcher, metrics, data, found, destination, arrival, filename)
    except ClientError as error:
        # 429: the decode budget was full; like a full disk, the sender may try again later.
        busy = error.status >= 500 or error.status == 429
        status = OUT_OF_RESOURCES if busy else CANNOT_UNDERSTAND
        raise Refused(status, error.message) from None


def _into_gallery(
    records: Records,
    matcher: Matcher,
    metrics: Metrics,
    data: bytes,
    found: DicomObject,
    destination: Destination,
    arrival: Arrival,
    filename: str | None,
) -> Received:
    ref = found.person_ref(destination.issuer)
    person_id = _person(records, ref)
    decoded = None
    if person_id is None:
        # A person is created only for a radiograph that will be stored: decoded first, so
        # that a refused first image leaves no person without images behind.
        matcher.require_serving()
        with metrics.timed("upload", "decode"):
            decoded = matcher.decode(data)
        person_id = _new_person(records, ref, found, arrival)
    with records.sessions() as session:
        same = session.scalar(
            select(Image.id).where(
                Image.person_id == person_id,
                Image.sop_instance_uid == found.sop_instance_uid,
                Image.deleted_at.is_(None),
            )
        )
    if same is not None:
        return Received(found.sop_class_uid, found.sop_instance_uid, False, same, person_id)
    image, stored = ingest_image(
        records=records,
        matcher=matcher,
        metrics=metrics,
        person_id=person_id,
        data=data,
        fields=ImageFields(filename=filename),
        key_id=arrival.key_id,
        origin=arrival.audit_details,
        decoded=decoded,
    )
    return Received(found.sop_class_uid, found.sop_instance_uid, stored, image.id, person_id)


def _new_person(records: Records, ref: str, found: DicomObject, arrival: Arrival) -> int:
    """The id of the gallery person `ref`, created now with the header's sex and birth year."""
    try:
        with records.sessions.begin() as session:
            return add_person(
                session,
                external_ref=ref,
                sex=found.patient_sex,
                birth_year=found.birth_year,
                key_id=arrival.key_id,
                audit_details=arrival.audit_details,
            ).id
    except Conflict:  # created meanwhile by a concurrent receive, or deleted
        existing = _person(records, ref)
        if existing is None:
            raise
        return existing


def _person(records: Records, ref: str) -> int | None:
    with records.sessions() as session:
        person = session.scalar(select(Person).where(Person.external_ref == ref))
    if person is None:
        return None
    if person.deleted_at is not None:
        raise Refused(
            DATASET_DOES_NOT_MATCH,
            f"person {ref!r} was deleted from the gallery; an admin must restore or rename them "
            "before their images are taken again",
        )
    return person.id
