"""Bulk-loading a cohort (`radmatch ingest`) through the same ingest path as the API: each image
is hashed, decoded, embedded, stored and committed on its own, so an interrupted run resumes where
it stopped (images already stored are recognised by their bytes and skipped)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from tqdm import tqdm

from app.core.errors import ClientError
from app.core.metrics import Metrics
from app.gallery.images import ImageFields, ingest_image
from app.gallery.people import add_person
from app.serving.matcher import Matcher
from app.storage.records import Records
from app.storage.tables import Person


@dataclass(frozen=True)
class BulkImage:
    """One file of a cohort: whose it is (the cohort's person id) and what is known of it."""

    person_ref: str
    sex: str | None
    path: Path
    fields: ImageFields


@dataclass(frozen=True)
class IngestSummary:
    people_added: int
    images_added: int
    images_already_stored: int


def ingest_images(
    *,
    records: Records,
    matcher: Matcher,
    metrics: Metrics,
    images: Sequence[BulkImage],
    by: dict[str, str] | None = None,
    progress: bool = True,
) -> IngestSummary:
    """`by`: who loads the cohort from the command line (app.audit.entries.command_line_actor)."""
    attribution = {} if by is None else {"by": by}
    people = _people_for(records, images, attribution)
    added = existing = 0
    for image in tqdm(images, desc="ingest", unit="img", disable=not progress):
        try:
            _, created = ingest_image(
                records=records,
                matcher=matcher,
                metrics=metrics,
                person_id=people[image.person_ref][0],
                data=image.path.read_bytes(),
                fields=image.fields,
                key_id=None,
                origin=attribution or None,
            )
        except ClientError as error:
            raise ClientError(f"{image.path}: {error.message}") from None
        added += created
        existing += not created
    new_people = sum(1 for _, created in people.values() if created)
    return IngestSummary(new_people, added, existing)


def _people_for(
    records: Records, images: Sequence[BulkImage], attribution: dict[str, dict[str, str]]
) -> dict[str, tuple[int, bool]]:
    """Each cohort person's id in the database (external_ref = the cohort's person id), created
    when missing; with whether it was created now."""
    refs = {image.person_ref: image.sex for image in images}
    with records.sessions.begin() as session:
        found = dict(
            session.execute(
                select(Person.external_ref, Person.id).where(
                    Person.external_ref.in_(refs), Person.deleted_at.is_(None)
                )
            ).all()
        )
        people = {ref: (person_id, False) for ref, person_id in found.items()}
        for ref, sex in refs.items():
            if ref not in people:
                person = add_person(
                    session,
                    external_ref=ref,
                    sex=sex,
                    key_id=None,
                    audit_details={"source": "radmatch ingest", **attribution},
                )
                people[ref] = (person.id, True)
    return people
