"""A search: embed the query, rank people by their best image, and store the answer exactly as
sent, with the model version and index generation it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from functools import cached_property

import numpy as np
from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.core.errors import Gone, NotFound
from app.core.metrics import Metrics
from app.evidence.calibrations import current_calibration
from app.evidence.open_set import DEFAULT_PRIOR, Prior
from app.evidence.service import Assessed, Searched, assess
from app.search.answer import ModelVersionRef, SearchAnswer
from app.search.filters import SearchFilters
from app.search.query_facts import QueryFacts, query_facts
from app.search.ranking import Ranking, rank_people
from app.serving.matcher import Matcher, Serving
from app.storage.originals import sha256_of
from app.storage.records import Records
from app.storage.tables import Case, Search, SearchResult, utcnow
from model.image import DecodedImage


@dataclass(frozen=True)
class SearchQuery:
    """What an examiner searches with: the radiograph's bytes and how to search."""

    data: bytes
    k: int
    filters: SearchFilters
    pixel_spacing_mm: float | None
    # When the query radiograph was taken, where the file does not say (a post-mortem image's
    # date, say); it overrides the file's own date.
    query_date: date | None = None
    prior: float | None = None  # that the person is in the gallery; else the case's, else 0.5

    @classmethod
    def from_stored(cls, data: bytes, parameters: dict) -> SearchQuery:
        """The query a stored search ran with: its original and the parameters it recorded."""
        stored_date = parameters.get("query_date")
        return cls(
            data,
            int(parameters["k"]),
            SearchFilters.from_stored(parameters.get("filters") or {}),
            parameters.get("pixel_spacing_mm"),
            date.fromisoformat(stored_date) if stored_date else None,
            parameters.get("prior"),
        )

    def date_of(self, decoded: DecodedImage) -> date | None:
        """The date the years between images count from: given, or the file's own."""
        return self.query_date or decoded.metadata.acquisition_date

    @cached_property
    def sha256(self) -> str:
        return sha256_of(self.data)

    @property
    def parameters(self) -> dict:
        return {
            "k": self.k,
            "filters": asdict(self.filters),
            "pixel_spacing_mm": self.pixel_spacing_mm,
            "query_date": None if self.query_date is None else self.query_date.isoformat(),
            "prior": self.prior,
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
    # The query is evidence too: stored first, and removed again unless its row commits (or
    # another row needs the same bytes); see app/storage/originals.py. It is written while the
    # query is embedded and searched.
    with records.originals.storing(query.sha256, query.data, records.original_needed) as writing:
        with metrics.timed("search", "embed"):
            vector = matcher.batcher.embed(serving.model, decoded, query.pixel_spacing_mm)
        weighed, ranking = _rank_and_weigh(
            records, serving, query, vector, query.date_of(decoded), metrics, case_id
        )
        with metrics.timed("search", "store"):
            writing.stored()
            answer = _record(
                records, serving, query, ranking, weighed, key_id=key_id, case_id=case_id
            )
        writing.needed = True
    metrics.searches.inc()
    return answer


def _rank_and_weigh(
    records: Records,
    serving: Serving,
    query: SearchQuery,
    vector: np.ndarray,
    query_date: date | None,
    metrics: Metrics,
    case_id: int | None,
) -> tuple[Weighed, Ranking]:
    with records.sessions() as session:
        with metrics.timed("search", "search"):
            ranking = rank_people(
                session, index=serving.index, vector=vector, k=query.k, filters=query.filters
            )
        with metrics.timed("search", "evidence"):
            searched = Searched(serving.version.id, ranking.index_generation, query.filters)
            assessed = assess(
                session,
                ranking.candidates,
                searched,
                calibration=current_calibration(session, serving.version.id),
                query_date=query_date,
                prior=search_prior(session, query, case_id),
            )
    return Weighed(assessed, query_date), ranking


def search_prior(session: Session, query: SearchQuery, case_id: int | None) -> Prior:
    """The search's own prior, else its case's, else the default."""
    if query.prior is not None:
        return Prior(query.prior, "request")
    case_prior = None if case_id is None else session.get(Case, case_id).prior_in_gallery
    if case_prior is not None:
        return Prior(case_prior, "case")
    return Prior(DEFAULT_PRIOR, "default")


@dataclass(frozen=True)
class Weighed:
    assessed: Assessed
    query_date: date | None


def _record(
    records: Records,
    serving: Serving,
    query: SearchQuery,
    ranking: Ranking,
    weighed: Weighed,
    *,
    key_id: int | None,
    case_id: int | None,
) -> SearchAnswer:
    """Store the search exactly as answered, its query's original already stored."""
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
            candidates=weighed.assessed.candidates,
            calibration=_calibration_ref(weighed.assessed),
            query_date=None if weighed.query_date is None else weighed.query_date.isoformat(),
            open_set=weighed.assessed.open_set,
        )
        row.response = answer.as_json()
        _add_results(session, answer, key_id=key_id)
    return answer


def _calibration_ref(assessed: Assessed) -> dict | None:
    return None if assessed.calibration is None else assessed.calibration.ref


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


def search_with_query(records: Records, search_id: int) -> Search:
    """A search whose query image is still stored."""
    with records.sessions() as session:
        record = session.get(Search, search_id)
    if record is None:
        raise NotFound(f"no search with id {search_id}")
    if not records.originals.exists(record.query_sha256):
        raise Gone(f"the query image of search {search_id} is no longer stored")
    return record


def stored_query_facts(*, records: Records, matcher: Matcher, search_id: int) -> QueryFacts:
    """What a stored search's query says about itself (app.search.query_facts), decoded again."""
    record = search_with_query(records, search_id)
    decoded = matcher.decode(records.originals.read(record.query_sha256))
    return query_facts(metadata=decoded.metadata, parameters=record.parameters)


def stored_search(session: Session, search_id: int) -> SearchAnswer:
    record = session.get(Search, search_id)
    if record is None:
        raise NotFound(f"no search with id {search_id}")
    return SearchAnswer.from_json(record.response)
