"""Ranking people by their best image: the nearest images from the index, grouped by person. A
search ranks the gallery as it is; a re-run ranks it as it was at a moment (`as_of`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from app.search.answer import Candidate, ImageMatch
from app.search.filters import SearchFilters
from app.serving.index import VectorIndex
from app.storage.tables import Image, Person


@dataclass(frozen=True)
class Ranking:
    candidates: tuple[Candidate, ...]
    index_generation: int
    index_size: int


def present(deleted_at, as_of: datetime | None) -> ColumnElement[bool]:
    """Not deleted now (as_of None), or not yet deleted at as_of: how the gallery was then."""
    return deleted_at.is_(None) if as_of is None else or_(deleted_at.is_(None), deleted_at > as_of)


def allowed_images(
    session: Session, filters: SearchFilters, *, as_of: datetime | None = None
) -> np.ndarray | None:
    """The ids of the images the filters allow, or None when there are no filters."""
    if not filters.any():
        return None
    query = (
        select(Image.id)
        .join(Person)
        .where(present(Image.deleted_at, as_of), present(Person.deleted_at, as_of))
        .where(*filters.person_conditions(), *filters.image_conditions())
    )
    return np.asarray(session.scalars(query).all(), dtype=np.int64)


def rank_people(
    session: Session,
    *,
    index: VectorIndex,
    vector: np.ndarray,
    k: int,
    filters: SearchFilters,
    as_of: datetime | None = None,
) -> Ranking:
    """The k best people, best first, each with its retrieved images; the image search widens
    until k people are found or every image was seen. Images deleted by `as_of` (default: now)
    are skipped."""
    allowed = allowed_images(session, filters, as_of=as_of)
    if allowed is not None and len(allowed) == 0:
        return Ranking((), index.generation, index.size)
    wanted = max(4 * k, 64)
    while True:
        similarities, ids, generation, size = index.search(vector, wanted, allowed)
        found = ids >= 0
        similarities, ids = similarities[found], ids[found]
        candidates = group_by_person(session, similarities, ids, as_of=as_of)
        limit = size if allowed is None else min(size, len(allowed))
        # An approximate index may find fewer than it was asked for: stop once it was asked for all.
        if len(candidates) >= k or len(ids) >= limit or wanted >= size:
            return Ranking(tuple(candidates[:k]), generation, size)
        wanted *= 4


def group_by_person(
    session: Session, similarities: np.ndarray, ids: np.ndarray, *, as_of: datetime | None
) -> list[Candidate]:
    """People by their best image, best first."""
    rows = session.execute(
        select(Image.id, Person.id, Person.external_ref)
        .join(Person)
        .where(Image.id.in_(ids.tolist()), present(Image.deleted_at, as_of))
    ).all()
    owner = {image_id: (person_id, ref) for image_id, person_id, ref in rows}
    matches: dict[int, list[ImageMatch]] = {}
    for similarity, image_id in zip(similarities.tolist(), ids.tolist(), strict=True):
        if image_id in owner:  # else deleted since the index last caught up
            matches.setdefault(owner[image_id][0], []).append(ImageMatch.of(image_id, similarity))
    refs = {person_id: ref for person_id, ref in owner.values()}
    return [
        Candidate(
            rank=rank,
            person_id=person_id,
            external_ref=refs[person_id],
            similarity=images[0].similarity,
            distance=images[0].distance,
            images=tuple(images),
        )
        for rank, (person_id, images) in enumerate(matches.items(), start=1)
    ]
