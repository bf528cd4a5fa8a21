"""A search: embed the query, rank people by their best image, and store the answer exactly as
sent, with the model version and index generation it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.core.errors import NotFound
from app.core.metrics import Metrics
from app.search.answer import ModelVersionRef, SearchAnswer
from app.search.filters import SearchFilters
from app.search.ranking import Ranking, rank_people
from app.serving.matcher import Matcher, Serving
from app.storage.originals import sha256_of
from app.storage.records import Records
from app.storage.tables import Search, SearchResult, utcnow


@dataclass(frozen=True)
class SearchQuery:
    """What an examiner searches with: the radiograph's bytes and how to search."""

    data: bytes
    k: int
    filters: SearchFilters
    pixel_spacing_mm: float | None

    @classmethod
    def from_stored(cls, data: bytes, parameters: dict) -> SearchQuery:
        """The query a stored search ran with: its original and the parameters it recorded."""
        return cls(
            data,
            int(parameters["k"]),
            SearchFilters.from_stored(parameters.get("filters") or {}),
            parameters.get("pixel_spacing_mm"),
        )

    @cached_property
    def sha256(self) -> str:
        return sha256_of(self.data)

    @property
    def parameters(self) -> dict:
        return {
            "k": self.k,
            "filters": asdict(self.filters),
            "pixel_spacing_mm": self.pixel_spacing_mm,
        }


def search(
    *,
    records: Records,
    matcher: Matcher,
    metrics: Metrics,
    query: SearchQuery,
    key_id: int | None,
    case_id: int | None = None,
) -> SearchAnswer:
    serving = matcher.require_index()
    with metrics.timed("search", "decode"):
        decoded = matcher.decode(query.data)
    with metrics.timed("search", "embed"):
        vector = matcher.batcher.embed(serving.model, decoded, query.pixel_spacing_mm)
    with metrics.timed("search", "search"), records.sessions() as session:
        ranking = rank_people(
            session, index=serving.index, vector=vector, k=query.k, filters=query.filters
        )
    with metrics.timed("search", "store"):
        answer = _record(records, serving, query, ranking, key_id=key_id, case_id=case_id)
    metrics.searches.inc()
    return answer


def _record(
    records: Records,
    serving: Serving,
    query: SearchQuery,
    ranking: Ranking,
    *,
    key_id: int | None,
    case_id: int | None,
) -> SearchAnswer:
    """Store the query's original and the search exactly as answered."""
    # The query is evidence too: stored first, and removed again unless its row commits (or
    # another row needs the same bytes); see app/storage/originals.py.
    with records.originals.writing(query.sha256, records.original_needed) as writing:
        records.originals.put(query.sha256, query.data)
        with records.sessions.begin() as session:
            row = _search_row(session, serving, query, ranking, key_id=key_id, case_id=case_id)
            answer = SearchAnswer(
                search_id=row.id,
                case_id=case_id,
                created_at=row.created_at.isoformat(),
                query_sha256=query.sha256,
                model_version=ModelVersionRef(serving.version.id, serving.version.sha256),
                inference=serving.model.inference,
                index_generation=ranking.index_generation,
                index_size=ranking.index_size,
                index=serving.index.description(),
                parameters=row.parameters,
                candidates=ranking.candidates,
            )
            row.response = answer.as_json()
            _add_results(session, answer, key_id=key_id)
        writing.needed = True
    return answer


def _search_row(
    session: Session,
    serving: Serving,
    query: SearchQuery,
    ranking: Ranking,
    *,
    key_id: int | None,
    case_id: int | None,
) -> Search:
    row = Search(
        key_id=key_id,
        case_id=case_id,
        query_sha256=query.sha256,
        model_version_id=serving.version.id,
        index_generation=ranking.index_generation,
        index_size=ranking.index_size,
        parameters=query.parameters,
        response={},
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def _add_results(session: Session, answer: SearchAnswer, *, key_id: int | None) -> None:
    """One row per candidate (what the person's appearances are listed from), and the audit."""
    session.add_all(
        SearchResult(
            search_id=answer.search_id,
            rank=c.rank,
            person_id=c.person_id,
            image_id=c.best_image_id,
            similarity=c.similarity,
            distance=c.distance,
        )
        for c in answer.candidates
    )
    record_entry(
        session,
        action="search",
        target_type="search",
        target_id=answer.search_id,
        details={"query_sha256": answer.query_sha256, "candidates": len(answer.candidates)},
        key_id=key_id,
    )


def stored_search(session: Session, search_id: int) -> SearchAnswer:
    record = session.get(Search, search_id)
    if record is None:
        raise NotFound(f"no search with id {search_id}")
    return SearchAnswer.from_json(record.response)
