"""From stored bytes to embeddings for the service: decoding with the service's limits and its
decode budget (refusals become 4xx errors), and embedding the live images a model version has no
embedding for yet."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Row, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.errors import decode_refusal
from app.serving.index import bump_generation
from app.storage.records import Records
from app.storage.tables import Embedding, Image, ModelVersion
from model.decode import decode_image
from model.image import DecodedImage, DecodeError, DecodeLimits
from model.inference import EmbeddingModel
from model.memory import Admission

log = logging.getLogger("radmatch")


def decode(data: bytes, limits: DecodeLimits, admit: Admission) -> DecodedImage:
    """The one place the service decodes: every upload, search, preview, rerun and re-embedding
    goes through Matcher.decode to here, so that the decode budget (`admit`) sees them all."""
    try:
        return decode_image(data, limits, admit)
    except DecodeError as error:
        raise decode_refusal(error) from None


def embed_missing(
    records: Records,
    *,
    model: EmbeddingModel,
    version: ModelVersion,
    decoder: Callable[[bytes], DecodedImage],
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 32,
) -> int:
    """Embed live images that have no embedding for this model version (uploaded under another
    model, or before any model was set), in batches; returns how many this call embedded. Safe
    to run in several processes at once: a batch another process embedded first is skipped."""
    with records.sessions() as session:
        missing = _images_without_embedding(session, version.id)
    if missing:
        log.info("embedding %d images with model version %d", len(missing), version.id)
    done = 0
    for start in range(0, len(missing), batch_size):
        batch = missing[start : start + batch_size]
        images = [decoder(records.originals.read(sha)) for _, sha, _ in batch]
        vectors = model.embed(images, [spacing for _, _, spacing in batch])
        try:
            done += _store_embeddings(records, version, batch, vectors)
        except IntegrityError:
            log.info("another process embedded these images first")
        if progress is not None:
            progress(min(start + batch_size, len(missing)), len(missing))
    return done


def _store_embeddings(records: Records, version: ModelVersion, batch: list[Row], vectors) -> int:
    with records.sessions.begin() as session:
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
    return sum(image_id in still_missing for image_id, _, _ in batch)


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
