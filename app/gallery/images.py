"""Images into the case database. Ingest hashes the raw bytes, decodes and embeds them, stores the
original, then writes one transaction for the image, its embedding and the audit entry; only then
does the index learn of it. A failure at any step leaves nothing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.core.errors import Gone, NotFound
from app.core.metrics import Metrics
from app.gallery.people import live_person
from app.serving.index import bump_generation
from app.serving.matcher import Matcher
from app.storage.originals import sha256_of
from app.storage.records import Records
from app.storage.tables import Embedding, Image, ModelVersion
from model.image import DecodedImage


@dataclass(frozen=True)
class ImageFields:
    """What the uploader says about an image; unset fields are read from the file where it can."""

    body_part: str | None = None
    side: str | None = None
    acquisition_date: date | None = None
    visit_months: float | None = None
    pixel_spacing_mm: float | None = None
    filename: str | None = None

    def image_row(self, decoded: DecodedImage, **known: Any) -> Image:
        """The image's row: what the uploader said, else what the file says."""
        meta = decoded.metadata
        return Image(
            format=meta.format,
            filename=self.filename,
            image_metadata=metadata_json(decoded),
            body_part=self.body_part or meta.body_part,
            side=self.side or meta.laterality,
            acquisition_date=self.acquisition_date or meta.acquisition_date,
            visit_months=self.visit_months,
            pixel_spacing_mm=self.pixel_spacing_mm
            or (meta.pixel_spacing_mm[1] if meta.pixel_spacing_mm else None),
            sop_instance_uid=meta.sop_instance_uid,
            **known,
        )


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
    *,
    records: Records,
    matcher: Matcher,
    metrics: Metrics,
    person_id: int,
    data: bytes,
    fields: ImageFields,
    key_id: int | None,
    origin: dict[str, Any] | None = None,
    decoded: DecodedImage | None = None,
) -> tuple[Image, bool]:
    """The image record, and whether it is new: the same bytes for the same person return the
    image already stored. `origin` says how the image came, for the audit log, where not by a
    key's upload (a DICOM sender, a disc); `decoded`, the data already decoded by the caller
    (through the matcher), so that it is not decoded twice."""
    sha256 = sha256_of(data)
    with records.sessions() as session:
        live_person(session, person_id)
        existing = _existing(session, person_id, sha256)
        if existing is not None:
            return existing, False
    serving = matcher.require_serving()
    if decoded is None:
        with metrics.timed("upload", "decode"):
            decoded = matcher.decode(data)
    # The original first, then the rows: a committed row never points at nothing. The hold on
    # the digest lets a failed or interrupted upload's original be removed (app/storage/originals.py).
    # The original is written while the image is embedded.
    with records.originals.storing(sha256, data, records.original_needed) as writing:
        with metrics.timed("upload", "embed"):
            vector = matcher.batcher.embed(serving.model, decoded, fields.pixel_spacing_mm)
        image = fields.image_row(
            decoded,
            person_id=person_id,
            sha256=sha256,
            size_bytes=len(data),
            uploaded_by_key_id=key_id,
        )
        with metrics.timed("upload", "store"):
            writing.stored()
            try:
                _commit_image(records, image, serving.version, vector, key_id=key_id, origin=origin)
            except IntegrityError:
                # A concurrent upload of the same bytes for the same person committed first.
                with records.sessions() as session:
                    existing = _existing(session, person_id, sha256)
                if existing is None:
                    raise
                return existing, False
        writing.needed = True
    metrics.ingested.inc()
    _catch_up(matcher, metrics, serving.version)
    return image, True


def _commit_image(
    records: Records,
    image: Image,
    version: ModelVersion,
    vector: np.ndarray,
    *,
    key_id: int | None,
    origin: dict[str, Any] | None,
) -> None:
    with records.sessions.begin() as session:
        live_person(session, image.person_id)
        session.add(image)
        session.flush()
        session.add(
            Embedding(
                image_id=image.id,
                model_version_id=version.id,
                vector=vector.astype(np.float32).tobytes(),
                added_generation=bump_generation(session, version.id),
            )
        )
        record_entry(
            session,
            action="image.upload",
            target_type="image",
            target_id=image.id,
            details={
                "person_id": image.person_id,
                "sha256": image.sha256,
                "bytes": image.size_bytes,
                **(origin or {}),
            },
            key_id=key_id,
        )


def _catch_up(matcher: Matcher, metrics: Metrics, embedded_with: ModelVersion) -> None:
    """Bring the new image into the index, under today's model too if it changed meanwhile."""
    current = matcher.serving
    if current is not None and current.version.id != embedded_with.id:
        matcher.embed_missing(current.model, current.version)
    with metrics.timed("upload", "index"):
        matcher.refresh()


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


def original_bytes(records: Records, image: Image) -> bytes:
    if image.original_purged_at is not None or not records.originals.exists(image.sha256):
        raise Gone(f"the original of image {image.id} was purged")
    return records.originals.read(image.sha256)
