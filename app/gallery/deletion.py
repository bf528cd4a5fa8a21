"""Deleting images and people. Rows are marked deleted, never removed (stored searches and the
audit log still refer to them); their embeddings leave the index at the next generation; a purge
also removes the original files that nothing else needs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.gallery.images import live_image
from app.gallery.people import live_person
from app.serving.index import bump_generation
from app.serving.matcher import Matcher
from app.storage.records import Records
from app.storage.tables import Embedding, Image, Person, utcnow


def delete_image(
    records: Records,
    matcher: Matcher,
    *,
    image_id: int,
    reason: str,
    purge: bool,
    key_id: int | None,
) -> Image:
    with records.sessions.begin() as session:
        image = live_image(session, image_id)
        _delete_image_row(session, image, reason=reason, purge=purge, key_id=key_id)
    _purge_originals(records, [image] if purge else [])
    matcher.refresh()
    return image


def delete_person(
    records: Records,
    matcher: Matcher,
    *,
    person_id: int,
    reason: str,
    purge: bool,
    key_id: int | None,
) -> Person:
    with records.sessions.begin() as session:
        person = live_person(session, person_id)
        images = [im for im in person.images if im.deleted_at is None]
        for image in images:
            _delete_image_row(session, image, reason=reason, purge=purge, key_id=key_id)
        person.deleted_at = utcnow()
        record_entry(
            session,
            action="person.delete",
            target_type="person",
            target_id=person.id,
            details={"reason": reason, "purge": purge, "images": [im.id for im in images]},
            key_id=key_id,
        )
    _purge_originals(records, images if purge else [])
    matcher.refresh()
    return person


def _delete_image_row(
    session: Session, image: Image, *, reason: str, purge: bool, key_id: int | None
) -> None:
    image.deleted_at = utcnow()
    if purge:
        image.original_purged_at = image.deleted_at
    _remove_from_index(session, image)
    record_entry(
        session,
        action="image.delete",
        target_type="image",
        target_id=image.id,
        details={"reason": reason, "purge": purge, "sha256": image.sha256},
        key_id=key_id,
    )


def _remove_from_index(session: Session, image: Image) -> None:
    """Mark the image's live embeddings removed, each at its model version's next generation."""
    embeddings = session.scalars(
        select(Embedding).where(
            Embedding.image_id == image.id, Embedding.removed_generation.is_(None)
        )
    ).all()
    for embedding in embeddings:
        embedding.removed_generation = bump_generation(session, embedding.model_version_id)


def _purge_originals(records: Records, images: list[Image]) -> None:
    """Remove purged originals that no committed row still needs (another person's image, a
    stored search's query). Done as a writer of those bytes on its way out, so an upload of the
    same bytes in flight keeps its file."""
    for image in images:
        with records.originals.writing(image.sha256, records.original_needed):
            pass
