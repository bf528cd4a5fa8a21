"""Images into and out of the case database. Ingest follows DESIGN.md's data flow: hash the raw
bytes, decode and embed them, store the original, then one transaction for the image, its embedding
and the audit entry; only then does the index learn of it. A failure at any step leaves nothing."""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import Row, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.errors import Gone, NotFound, decode_refusal
from app.serving.index import bump_generation
from app.serving.service import Service, sha256_of
from app.storage.tables import AuditEntry, Embedding, Image, ModelVersion, Person, utcnow
from model.decode import decode_image
from model.image import DecodedImage, DecodeError
from model.inference import EmbeddingModel

log = logging.getLogger("radmatch")

MEDIA_TYPES = {
    "dicom": "application/dicom",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "tiff": "image/tiff",
}
FILE_SUFFIXES = {"dicom": "dcm", "png": "png", "jpeg": "jpg", "tiff": "tif"}
# A preview of stored bytes never changes; an hour in the examiner's own browser only, so that a
# deleted image does not linger.
PREVIEW_CACHING = {"Cache-Control": "private, max-age=3600"}


@dataclass(frozen=True)
class ImageFields:
    """What the uploader says about an image; unset fields are read from the file where it can."""

    body_part: str | None = None
    side: str | None = None
    acquisition_date: date | None = None
    visit_months: float | None = None
    pixel_spacing_mm: float | None = None
    filename: str | None = None


def decode(service: Service, data: bytes) -> DecodedImage:
    try:
        return decode_image(data, service.decode_limits)
    except DecodeError as error:
        raise decode_refusal(error) from None


def live_person(session: Session, person_id: int) -> Person:
    person = session.get(Person, person_id)
    if person is None or person.deleted_at is not None:
        raise NotFound(f"no person with id {person_id}")
    return person


def live_image(session: Session, image_id: int) -> Image:
    image = session.get(Image, image_id)
    if image is None or image.deleted_at is not None:
        raise NotFound(f"no image with id {image_id}")
    return image


def _existing(session: Session, person_id: int, sha256: str) -> Image | None:
    return session.scalar(
        select(Image).where(
            Image.person_id == person_id, Image.sha256 == sha256, Image.deleted_at.is_(None)
        )
    )


def ingest_image(
    service: Service, person_id: int, data: bytes, fields: ImageFields, key_id: int | None
) -> tuple[Image, bool]:
    """The image record, and whether it is new: the same bytes for the same person return the
    image already stored."""
    sha256 = sha256_of(data)
    with service.sessions() as session:
        live_person(session, person_id)
        existing = _existing(session, person_id, sha256)
        if existing is not None:
            return existing, False
    serving = service.require_serving()
    version = serving.version
    timed = functools.partial(service.metrics.timed, "upload")
    with timed("decode"):
        decoded = decode(service, data)
    with timed("embed"):
        vector = service.batcher.embed(serving.model, decoded, fields.pixel_spacing_mm)
    meta = decoded.metadata
    image = Image(
        person_id=person_id,
        sha256=sha256,
        size_bytes=len(data),
        format=meta.format,
        filename=fields.filename,
        image_metadata=metadata_json(decoded),
        body_part=fields.body_part or meta.body_part,
        side=fields.side or meta.laterality,
        acquisition_date=fields.acquisition_date or meta.acquisition_date,
        visit_months=fields.visit_months,
        pixel_spacing_mm=fields.pixel_spacing_mm
        or (meta.pixel_spacing_mm[1] if meta.pixel_spacing_mm else None),
        uploaded_by_key_id=key_id,
    )
    # The original first, then the rows: a committed row never points at nothing. The hold on
    # the digest lets a failed or interrupted upload's original be removed (see app/storage/originals.py).
    with timed("store"), service.store.writing(sha256, service.original_needed) as writing:
        service.store.put(sha256, data)
        try:
            with service.sessions.begin() as session:
                live_person(session, person_id)
                session.add(image)
                session.flush()
                generation = bump_generation(session, version.id)
                session.add(
                    Embedding(
                        image_id=image.id,
                        model_version_id=version.id,
                        vector=vector.astype(np.float32).tobytes(),
                        added_generation=generation,
                    )
                )
                session.add(
                    AuditEntry(
                        key_id=key_id,
                        action="image.upload",
                        target_type="image",
                        target_id=image.id,
                        details={"person_id": person_id, "sha256": sha256, "bytes": len(data)},
                    )
                )
        except IntegrityError:
            # A concurrent upload of the same bytes for the same person committed first.
            with service.sessions() as session:
                existing = _existing(session, person_id, sha256)
            if existing is None:
                raise
            return existing, False
        writing.needed = True
    service.metrics.ingested.inc()
    current = service.serving
    if current is not None and current.version.id != version.id:
        # The active model changed while this image was embedded: give it the new model's too.
        embed_missing(service, current.model, current.version)
    with timed("index"):
        service.refresh_index()
    return image, True


def metadata_json(image: DecodedImage) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, tuple):
            return list(value)
        return value

    return {
        k: plain(v) for k, v in dataclasses.asdict(image.metadata).items() if v not in (None, {})
    }


def _remove_from_index(session: Session, image: Image) -> None:
    """Mark the image's live embeddings removed, each at its model version's next generation."""
    embeddings = session.scalars(
        select(Embedding).where(
            Embedding.image_id == image.id, Embedding.removed_generation.is_(None)
        )
    ).all()
    for embedding in embeddings:
        embedding.removed_generation = bump_generation(session, embedding.model_version_id)


def delete_image(
    service: Service, image_id: int, reason: str, purge: bool, key_id: int | None
) -> Image:
    with service.sessions.begin() as session:
        image = live_image(session, image_id)
        _delete(session, image, reason, purge, key_id)
    _purge_originals(service, [image] if purge else [])
    service.refresh_index()
    return image


def delete_person(
    service: Service, person_id: int, reason: str, purge: bool, key_id: int | None
) -> Person:
    with service.sessions.begin() as session:
        person = live_person(session, person_id)
        images = [im for im in person.images if im.deleted_at is None]
        for image in images:
            _delete(session, image, reason, purge, key_id)
        person.deleted_at = utcnow()
        session.add(
            AuditEntry(
                key_id=key_id,
                action="person.delete",
                target_type="person",
                target_id=person.id,
                details={"reason": reason, "purge": purge, "images": [im.id for im in images]},
            )
        )
    _purge_originals(service, images if purge else [])
    service.refresh_index()
    return person


def _delete(session: Session, image: Image, reason: str, purge: bool, key_id: int | None) -> None:
    image.deleted_at = utcnow()
    if purge:
        image.original_purged_at = image.deleted_at
    _remove_from_index(session, image)
    session.add(
        AuditEntry(
            key_id=key_id,
            action="image.delete",
            target_type="image",
            target_id=image.id,
            details={"reason": reason, "purge": purge, "sha256": image.sha256},
        )
    )


def _purge_originals(service: Service, images: list[Image]) -> None:
    """Remove purged originals that no committed row still needs (another person's image, a
    stored search's query). Done as a writer of those bytes on its way out, so an upload of the
    same bytes in flight keeps its file."""
    for image in images:
        with service.store.writing(image.sha256, service.original_needed):
            pass


def original_bytes(service: Service, image: Image) -> bytes:
    if image.original_purged_at is not None or not service.store.exists(image.sha256):
        raise Gone(f"the original of image {image.id} was purged")
    return service.store.read(image.sha256)


def preview_png(service: Service, data: bytes, max_side: int) -> bytes:
    """An 8-bit greyscale PNG of a radiograph, bone bright, at most max_side pixels wide or high."""
    decoded = decode(service, data)
    picture = PILImage.fromarray(np.round(decoded.pixels * 255).astype(np.uint8))
    picture.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def embed_missing(
    service: Service,
    model: EmbeddingModel,
    version: ModelVersion,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 32,
) -> int:
    """Embed live images that have no embedding for this model version (uploaded under another
    model, or before any model was set), in batches; returns how many this call embedded. Safe
    to run in several processes at once: a batch another process embedded first is skipped."""
    with service.sessions() as session:
        missing = _images_without_embedding(session, version.id)
    if missing:
        log.info("embedding %d images with model version %d", len(missing), version.id)
    done = 0
    for start in range(0, len(missing), batch_size):
        batch = missing[start : start + batch_size]
        images = [decode(service, service.store.read(sha)) for _, sha, _ in batch]
        vectors = model.embed(images, [spacing for _, _, spacing in batch])
        try:
            with service.sessions.begin() as session:
                # Recheck under the generation's row lock: another process may have been first.
                generation = bump_generation(session, version.id)
                rows = _images_without_embedding(session, version.id, [i for i, _, _ in batch])
                still_missing = {image_id for image_id, _, _ in rows}
                session.add_all(
                    Embedding(
                        image_id=image_id,
                        model_version_id=version.id,
                        vector=vector.tobytes(),
                        added_generation=generation,
                    )
                    for (image_id, _, _), vector in zip(batch, vectors, strict=True)
                    if image_id in still_missing
                )
                done += sum(image_id in still_missing for image_id, _, _ in batch)
        except IntegrityError:
            log.info("another process embedded these images first")
        if progress is not None:
            progress(min(start + batch_size, len(missing)), len(missing))
    return done


def _images_without_embedding(
    session: Session, version_id: int, among: list[int] | None = None
) -> list[Row]:
    """Live images (of these ids, if given) that have no embedding for this model version."""
    embedded = select(Embedding.image_id).where(Embedding.model_version_id == version_id)
    query = select(Image.id, Image.sha256, Image.pixel_spacing_mm).where(
        Image.deleted_at.is_(None), Image.id.not_in(embedded)
    )
    if among is not None:
        query = query.where(Image.id.in_(among))
    return session.execute(query.order_by(Image.id)).all()
