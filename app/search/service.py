"""A search: embed the query, find the nearest images, rank people by their best image, and store
the answer exactly as sent, with the model version and index generation it came from."""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.core.errors import NotFound
from app.gallery.images import decode
from app.serving.service import Service, Serving, sha256_of
from app.storage.tables import AuditEntry, Image, Person, Search, SearchResult, utcnow


@dataclass(frozen=True)
class SearchFilters:
    sex: str | None = None
    birth_year_min: int | None = None
    birth_year_max: int | None = None
    body_part: str | None = None
    side: str | None = None

    def any(self) -> bool:
        return any(v is not None for v in asdict(self).values())


def distance(similarity: float) -> float:
    """Euclidean distance between unit vectors with this cosine similarity."""
    return math.sqrt(max(0.0, 2.0 - 2.0 * similarity))


def search(
    service: Service,
    data: bytes,
    k: int,
    filters: SearchFilters,
    pixel_spacing_mm: float | None,
    key_id: int | None,
    case_id: int | None = None,
) -> dict[str, Any]:
    serving = service.require_index()
    query_sha256 = sha256_of(data)
    timed = functools.partial(service.metrics.timed, "search")
    with timed("decode"):
        decoded = decode(service, data)
    with timed("embed"):
        vector = service.batcher.embed(serving.model, decoded, pixel_spacing_mm)
    with timed("search"), service.sessions() as session:
        allowed = _allowed_images(session, filters) if filters.any() else None
        candidates, generation, size = _nearest_people(session, serving.index, vector, k, allowed)
    with timed("store"):
        response = _record(
            service,
            data,
            query_sha256,
            key_id,
            case_id,
            serving,
            {"k": k, "filters": asdict(filters), "pixel_spacing_mm": pixel_spacing_mm},
            candidates,
            generation,
            size,
        )
    service.metrics.searches.inc()
    return response


def _record(
    service: Service,
    data: bytes,
    query_sha256: str,
    key_id: int | None,
    case_id: int | None,
    serving: Serving,
    parameters: dict[str, Any],
    candidates: list[dict[str, Any]],
    generation: int,
    size: int,
) -> dict[str, Any]:
    """Store the query's original and the search exactly as answered; the response."""
    version = serving.version
    # The query is evidence too: stored first, and removed again unless its row commits (or
    # another row needs the same bytes); see app/storage/originals.py.
    with service.store.writing(query_sha256, service.original_needed) as writing:
        service.store.put(query_sha256, data)
        with service.sessions.begin() as session:
            record = Search(
                key_id=key_id,
                case_id=case_id,
                query_sha256=query_sha256,
                model_version_id=version.id,
                index_generation=generation,
                index_size=size,
                parameters=parameters,
                response={},
                created_at=utcnow(),
            )
            session.add(record)
            session.flush()
            response = {
                "search_id": record.id,
                "case_id": case_id,
                "created_at": record.created_at.isoformat(),
                "query_sha256": query_sha256,
                "model_version": {"id": version.id, "sha256": version.sha256},
                "inference": serving.model.inference,
                "index_generation": generation,
                "index_size": size,
                "index": serving.index.description(),
                "parameters": record.parameters,
                "candidates": candidates,
            }
            record.response = response
            session.add_all(
                SearchResult(
                    search_id=record.id,
                    rank=c["rank"],
                    person_id=c["person_id"],
                    image_id=c["images"][0]["image_id"],
                    similarity=c["similarity"],
                    distance=c["distance"],
                )
                for c in candidates
            )
            session.add(
                AuditEntry(
                    key_id=key_id,
                    action="search",
                    target_type="search",
                    target_id=record.id,
                    details={"query_sha256": query_sha256, "candidates": len(candidates)},
                )
            )
        writing.needed = True
    return response


def _present(deleted_at, as_of: datetime | None):
    """Not deleted now (as_of None), or not yet deleted at as_of: how the gallery was then."""
    return deleted_at.is_(None) if as_of is None else or_(deleted_at.is_(None), deleted_at > as_of)


def _allowed_images(
    session: Session, filters: SearchFilters, *, as_of: datetime | None = None
) -> np.ndarray:
    query = (
        select(Image.id)
        .join(Person)
        .where(_present(Image.deleted_at, as_of), _present(Person.deleted_at, as_of))
    )
    if filters.sex is not None:
        query = query.where(Person.sex == filters.sex)
    if filters.birth_year_min is not None:
        query = query.where(Person.birth_year >= filters.birth_year_min)
    if filters.birth_year_max is not None:
        query = query.where(Person.birth_year <= filters.birth_year_max)
    if filters.body_part is not None:
        query = query.where(Image.body_part == filters.body_part)
    if filters.side is not None:
        query = query.where(Image.side == filters.side)
    return np.asarray(session.scalars(query).all(), dtype=np.int64)


def _nearest_people(
    session: Session,
    index,
    vector: np.ndarray,
    k: int,
    allowed: np.ndarray | None,
    *,
    as_of: datetime | None = None,
) -> tuple[list[dict[str, Any]], int, int]:
    """The k best people, best first, each with its retrieved images; widen the image search until
    k people are found or every image was seen. Images deleted by `as_of` (default: now) are
    skipped."""
    if allowed is not None and len(allowed) == 0:
        return [], index.generation, index.size
    wanted = max(4 * k, 64)
    while True:
        similarities, ids, generation, size = index.search(vector, wanted, allowed)
        found = ids >= 0
        similarities, ids = similarities[found], ids[found]
        candidates = _group_by_person(session, similarities, ids, as_of=as_of)
        limit = size if allowed is None else min(size, len(allowed))
        # An approximate index may find fewer than it was asked for: stop once it was asked for all.
        if len(candidates) >= k or len(ids) >= limit or wanted >= size:
            return candidates[:k], generation, size
        wanted *= 4


def _group_by_person(
    session: Session, similarities: np.ndarray, ids: np.ndarray, *, as_of: datetime | None
) -> list[dict[str, Any]]:
    """People by their best image. as_of None skips images deleted now; a time keeps the images
    not yet deleted then (re-running a stored search at the gallery it saw)."""
    rows = session.execute(
        select(Image.id, Person.id, Person.external_ref)
        .join(Person)
        .where(Image.id.in_(ids.tolist()), _present(Image.deleted_at, as_of))
    ).all()
    owner = {image_id: (person_id, ref) for image_id, person_id, ref in rows}
    people: dict[int, dict[str, Any]] = {}
    for similarity, image_id in zip(similarities.tolist(), ids.tolist(), strict=True):
        if image_id not in owner:  # deleted since the index last caught up
            continue
        person_id, ref = owner[image_id]
        match = {"image_id": image_id, "similarity": similarity, "distance": distance(similarity)}
        if person_id not in people:
            people[person_id] = {
                "rank": len(people) + 1,
                "person_id": person_id,
                "external_ref": ref,
                "similarity": similarity,
                "distance": match["distance"],
                "images": [],
            }
        people[person_id]["images"].append(match)
    return list(people.values())


def stored_search(session: Session, search_id: int) -> dict[str, Any]:
    record = session.get(Search, search_id)
    if record is None:
        raise NotFound(f"no search with id {search_id}")
    return record.response
