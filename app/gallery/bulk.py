"""Bulk-loading a cohort (`radmatch ingest`) through the same ingest path as the API: each image
is hashed, decoded, embedded, stored and committed on its own, so an interrupted run resumes where
it stopped (images already stored are recognised by their bytes and skipped)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from tqdm import tqdm

from app.core.errors import ClientError
from app.gallery.images import ImageFields, ingest_image
from app.serving.service import Service
from app.storage.tables import AuditEntry, Person
from training.records import ImageRecord


@dataclass(frozen=True)
class IngestSummary:
    people_added: int
    images_added: int
    images_already_stored: int


def ingest_records(
    service: Service, records: Sequence[ImageRecord], progress: bool = True
) -> IngestSummary:
    people = _people_for(service, records)
    added = existing = 0
    for record in tqdm(records, desc="ingest", unit="img", disable=not progress):
        fields = ImageFields(
            body_part=record.body_part,
            side=record.side,
            visit_months=record.visit_months,
            pixel_spacing_mm=record.pixel_spacing_mm,
            filename=record.path.name,
        )
        person_id = people[record.person_id][0]
        try:
            _, created = ingest_image(service, person_id, record.path.read_bytes(), fields, None)
        except ClientError as error:
            raise ClientError(f"{record.path}: {error.message}") from None
        added += created
        existing += not created
    new_people = sum(1 for _, created in people.values() if created)
    return IngestSummary(new_people, added, existing)


def _people_for(service: Service, records: Sequence[ImageRecord]) -> dict[str, tuple[int, bool]]:
    """Each cohort person's id in the database (external_ref = the cohort's person id), created
    when missing; with whether it was created now."""
    refs = {r.person_id: r.sex for r in records}
    with service.sessions.begin() as session:
        found = dict(
            session.execute(
                select(Person.external_ref, Person.id).where(
                    Person.external_ref.in_(refs), Person.deleted_at.is_(None)
                )
            ).all()
        )
        people = {ref: (person_id, False) for ref, person_id in found.items()}
        for ref, sex in refs.items():
            if ref in people:
                continue
            person = Person(external_ref=ref, sex=sex)
            session.add(person)
            session.flush()
            session.add(
                AuditEntry(
                    action="person.create",
                    target_type="person",
                    target_id=person.id,
                    details={"external_ref": ref, "source": "radmatch ingest"},
                )
            )
            people[ref] = (person.id, True)
    return people
