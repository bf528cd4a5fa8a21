"""STOW-RS (PS3.18 10.5): a multipart/related body of DICOM instances, each taken or refused on
its own through the one intake, and the Store Instances Response (PS3.18 Annex I) that says which.

The body is spooled as it arrives and split with one scan (app/dicom/multipart.py); no part is
stored before every part is known to be within the size limit, so a 413 leaves nothing behind.
Each stored part is committed whole before the next one is read: a request cut off part-way has
stored exactly the instances before the cut, and sending it again stores the rest (the intake
recognises what it holds)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, BinaryIO

from pydicom.dataset import Dataset

from app.cases.service import live_case
from app.core.errors import ClientError, TooLarge, UnsupportedMediaType
from app.core.metrics import Metrics
from app.dicom.arrival import Arrival, Destination
from app.dicom.intake import Received, receive
from app.dicom.multipart import Part, split_parts
from app.dicom.objects import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH, Refused, read_object
from app.serving.matcher import Matcher
from app.storage.records import Records

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
# One request carries at most this many instances of the upload limit's size (more, smaller ones
# are fine): a study's radiographs fit, and a sender splits anything larger into requests.
INSTANCES_PER_REQUEST = 16
# Each part's boundary line and headers, on top of its content.
PART_FRAMING = 64 * 1024
MAX_PARTS = 1000
# RFC 2046 allows 70 characters; Orthanc's DICOMweb plugin sends 73 (two UUIDs and a hyphen).
BOUNDARY_MAX = 200
# Where the reason for a failed instance goes, in words: the Failed SOP Sequence's items
# (PS3.18 Table I.1-1) hold the SOP instance and its Failure Reason code and nothing textual, so
# the words go in a private element of radmatch's own block, as PS3.5 7.8 allows.
PRIVATE_CREATOR = "RADMATCH"
PRIVATE_GROUP = 0x0009
REASON_ELEMENT = 0x01


def body_limit(max_upload_bytes: int) -> int:
    """The largest STOW-RS request body taken."""
    return INSTANCES_PER_REQUEST * (max_upload_bytes + PART_FRAMING)


def boundary_of(content_type: str) -> bytes:
    """The boundary of a STOW-RS body of DICOM instances; 415 for any other kind of body."""
    header = Message()
    header["Content-Type"] = content_type
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "multipart/related":
        raise UnsupportedMediaType(
            f'STOW-RS takes a multipart/related; type="{DICOM}" body, not '
            f"{media_type or 'a body without a Content-Type'}"
        )
    part_type = header.get_param("type")
    if part_type is not None and str(part_type).strip().lower() != DICOM:
        raise UnsupportedMediaType(
            f"radmatch takes DICOM instances as PS3.10 files (type={DICOM}), not {part_type}: "
            "send the instances themselves rather than their metadata and bulk data"
        )
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= BOUNDARY_MAX:
        raise ClientError(
            f"the Content-Type names no boundary of 1 to {BOUNDARY_MAX} characters: {content_type}"
        )
    return boundary.encode("latin-1")


@dataclass(frozen=True)
class Failed:
    """A part not stored: its SOP instance where it could be read, the DICOM status (PS3.18
    I.2.2: the C-STORE statuses of PS3.4 B.2.3), and why."""

    status: int
    reason: str
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None


@dataclass
class StoreOutcome:
    stored: list[Received] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)

    @property
    def http_status(self) -> int:
        """PS3.18 10.5.3.1: 200 all stored, 202 some failed, 409 none stored."""
        if not self.failed:
            return 200
        return 202 if self.stored else 409


def store_instances(
    *,
    records: Records,
    matcher: Matcher,
    metrics: Metrics,
    body: BinaryIO,
    boundary: bytes,
    destination: Destination,
    arrival: Arrival,
    study_instance_uid: str | None,
    part_limit: int,
) -> StoreOutcome:
    """Take each part of a STOW-RS body through the intake, in order. With a study, an instance of
    another study fails (0xA900) without being stored."""
    if destination.case_id is not None:
        with records.sessions() as session:
            live_case(session, destination.case_id)
    parts = split_parts(body, boundary)
    _check_sizes(parts, part_limit)
    outcome = StoreOutcome()
    for part in parts:
        result = _store_part(
            records, matcher, metrics, body, part, destination, arrival, study_instance_uid
        )
        if isinstance(result, Failed):
            outcome.failed.append(result)
        else:
            outcome.stored.append(result)
    return outcome


def _store_part(
    records: Records,
    matcher: Matcher,
    metrics: Metrics,
    body: BinaryIO,
    part: Part,
    destination: Destination,
    arrival: Arrival,
    study_instance_uid: str | None,
) -> Received | Failed:
    declared = (part.content_type or DICOM).split(";", 1)[0].strip().lower()
    if declared != DICOM:
        return Failed(CANNOT_UNDERSTAND, f"part {part.number} is {declared}, not {DICOM}")
    data = part.read(body)
    try:
        found = read_object(data)
    except Refused as refused:
        return Failed(refused.status, f"part {part.number}: {refused.reason}")
    ids = {"sop_class_uid": found.sop_class_uid, "sop_instance_uid": found.sop_instance_uid}
    if study_instance_uid is not None and found.study_instance_uid != study_instance_uid:
        reason = (
            f"{found.kind} {found.sop_instance_uid} belongs to study "
            f"{found.study_instance_uid or '(none given)'}, not to study {study_instance_uid} "
            "that this request stores into"
        )
        return Failed(DATASET_DOES_NOT_MATCH, reason, **ids)
    try:
        return receive(
            records=records,
            matcher=matcher,
            metrics=metrics,
            data=data,
            destination=destination,
            arrival=arrival,
        )
    except Refused as refused:
        return Failed(refused.status, refused.reason, **ids)


def _check_sizes(parts: list[Part], part_limit: int) -> None:
    if not parts:
        raise ClientError("the body holds no part, so there is no instance to store")
    if len(parts) > MAX_PARTS:
        raise TooLarge(
            f"the body holds {len(parts)} parts; at most {MAX_PARTS} instances per request, "
            "and nothing was stored"
        )
    for part in parts:
        if part.size > part_limit:
            raise TooLarge(
                f"part {part.number} is {part.size} bytes; each instance may be at most "
                f"{part_limit} bytes (RADMATCH_MAX_UPLOAD_BYTES), and nothing was stored"
            )


def store_response(
    outcome: StoreOutcome, retrieve_url: Callable[[Received], str]
) -> dict[str, Any]:
    """The Store Instances Response (PS3.18 Table I.1-1) in the DICOM JSON model: where each
    stored instance can be fetched (our original, as received), and each failure's status and
    reason. The study-level Retrieve URL (Type 2) is empty: radmatch serves no WADO-RS."""
    response = Dataset()
    response.RetrieveURL = ""
    if outcome.stored:
        response.ReferencedSOPSequence = [
            _reference(received.sop_class_uid, received.sop_instance_uid, retrieve_url(received))
            for received in outcome.stored
        ]
    if outcome.failed:
        response.FailedSOPSequence = [_failure(failed) for failed in outcome.failed]
    return response.to_json_dict()


def _reference(sop_class_uid: str, sop_instance_uid: str, url: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    item.RetrieveURL = url
    return item


def _failure(failed: Failed) -> Dataset:
    item = Dataset()
    # Type 1, but a part that is not DICOM names no instance: empty rather than made up.
    item.ReferencedSOPClassUID = failed.sop_class_uid or ""
    item.ReferencedSOPInstanceUID = failed.sop_instance_uid or ""
    item.FailureReason = failed.status
    block = item.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(REASON_ELEMENT, "LT", failed.reason)
    return item
