"""A case's inbox: radiographs of the case's unknown person that arrived by DICOM (a mortuary's
system sending by C-STORE, a STOW-RS request), kept with the case until an examiner searches with
one. Receiving one checks that it decodes as a radiograph, stores the original, then commits its
row and audit entry in one transaction; the same object sent again is the item already there."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.cases.service import live_case
from app.core.errors import Gone, NotFound
from app.dicom.arrival import Arrival
from app.gallery.images import metadata_json
from app.serving.matcher import Matcher
from app.storage.originals import sha256_of
from app.storage.records import Records
from app.storage.tables import InboxItem


def receive_for_case(
    *,
    records: Records,
    matcher: Matcher,
    case_id: int,
    data: bytes,
    arrival: Arrival,
) -> tuple[InboxItem, bool]:
    """The inbox item, and whether it is new; the same bytes, or the same SOP instance re-encoded,
    give the item already there."""
    sha256 = sha256_of(data)
    with records.sessions() as session:
        live_case(session, case_id)
        same = _same_item(session, case_id, sha256, None)
        if same is not None:
            return same, False
    decoded = matcher.decode(data)
    with records.sessions() as session:
        same = _same_item(session, case_id, sha256, decoded.metadata.sop_instance_uid)
        if same is not None:
            return same, False
    item = InboxItem(
        case_id=case_id,
        sha256=sha256,
        size_bytes=len(data),
        sop_instance_uid=decoded.metadata.sop_instance_uid,
        image_metadata=metadata_json(decoded),
        received_via=arrival.via,
        sender=arrival.sender,
        key_id=arrival.key_id,
    )
    with records.originals.writing(sha256, records.original_needed) as writing:
        records.originals.put(sha256, data)
        try:
            _commit_item(records, item, arrival)
        except IntegrityError:  # the same bytes for this case, committed concurrently
            with records.sessions() as session:
                same = _same_item(session, case_id, sha256, None)
            if same is None:
                raise
            return same, False
        writing.needed = True
    return item, True


def _same_item(
    session: Session, case_id: int, sha256: str, sop_instance_uid: str | None
) -> InboxItem | None:
    same_object = InboxItem.sha256 == sha256
    if sop_instance_uid:
        same_object = or_(same_object, InboxItem.sop_instance_uid == sop_instance_uid)
    return session.scalars(
        select(InboxItem).where(InboxItem.case_id == case_id, same_object).order_by(InboxItem.id)
    ).first()


def _commit_item(records: Records, item: InboxItem, arrival: Arrival) -> None:
    with records.sessions.begin() as session:
        live_case(session, item.case_id)
        session.add(item)
        session.flush()
        record_entry(
            session,
            action="case.inbox.receive",
            target_type="case",
            target_id=item.case_id,
            details={
                "inbox_item_id": item.id,
                "sha256": item.sha256,
                "bytes": item.size_bytes,
                "sop_instance_uid": item.sop_instance_uid,
                **arrival.audit_details,
            },
            key_id=arrival.key_id,
        )


def inbox(session: Session, case_id: int) -> list[InboxItem]:
    live_case(session, case_id)
    return list(
        session.scalars(
            select(InboxItem).where(InboxItem.case_id == case_id).order_by(InboxItem.id)
        )
    )


def inbox_item(session: Session, case_id: int, item_id: int) -> InboxItem:
    live_case(session, case_id)
    item = session.get(InboxItem, item_id)
    if item is None or item.case_id != case_id:
        raise NotFound(f"case {case_id} has no inbox item {item_id}")
    return item


def item_bytes(records: Records, case_id: int, item_id: int) -> bytes:
    with records.sessions() as session:
        item = inbox_item(session, case_id, item_id)
    if not records.originals.exists(item.sha256):
        raise Gone(f"the original of inbox item {item_id} is no longer stored")
    return records.originals.read(item.sha256)
