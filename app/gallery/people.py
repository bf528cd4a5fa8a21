"""People in the case database, created by an examiner (the API) or by a bulk load, each creation
audited. Deleting them is app/gallery/deletion.py's."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.core.errors import Conflict, NotFound
from app.storage.tables import Person


def live_person(session: Session, person_id: int) -> Person:
    person = session.get(Person, person_id)
    if person is None or person.deleted_at is not None:
        raise NotFound(f"no person with id {person_id}")
    return person


def add_person(
    session: Session,
    *,
    external_ref: str,
    key_id: int | None,
    audit_details: dict[str, Any] | None = None,
    **attributes: Any,
) -> Person:
    """A new person in the caller's transaction, audited. A duplicate external_ref is a 409."""
    person = Person(external_ref=external_ref, created_by_key_id=key_id, **attributes)
    session.add(person)
    try:
        session.flush()
    except IntegrityError:  # the caller's transaction is rolled back as this propagates
        raise Conflict(
            f"a person with external_ref {external_ref!r} exists already; "
            "find them with GET /api/v1/people?external_ref=..."
        ) from None
    record_entry(
        session,
        action="person.create",
        target_type="person",
        target_id=person.id,
        details={"external_ref": external_ref, **(audit_details or {})},
        key_id=key_id,
    )
    return person
