"""Searching the gallery with a radiograph, and stored searches with their query images."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile

from app.api import API_PREFIX
from app.api.deps import AnyKey, PathId, ServiceDep
from app.api.headers import ORIGINAL_CACHING, tagged_content
from app.api.schemas.common import MAX_ROW_ID, NoNul, Sex, Side, refusals
from app.api.schemas.searches import ExplanationOut, QueryFactsOut, RerunOut, SearchOut
from app.api.uploads import body_part as normal_body_part
from app.api.uploads import read_upload
from app.cases.reviews import answer_as_seen, search_sight
from app.core.errors import Conflict, Unprocessable
from app.gallery.previews import PREVIEW_CACHING, preview_png
from app.rerun.service import rerun
from app.search.answer import SearchAnswer
from app.search.explanation import explain
from app.search.filters import SearchFilters
from app.search.service import (
    SearchQuery,
    search,
    search_with_query,
    stored_query_facts,
    stored_search,
)
from app.serving.service import Service

router = APIRouter(prefix=API_PREFIX, tags=["search"], responses=refusals(401, 503))


@dataclass(frozen=True)
class SearchOptions:
    """How to search, from a search form; the radiograph comes separately (an upload, or an item
    of a case's inbox)."""

    k: int
    filters: SearchFilters
    pixel_spacing_mm: float | None
    query_date: date | None
    prior: float | None

    def query(self, data: bytes) -> SearchQuery:
        return SearchQuery(
            data, self.k, self.filters, self.pixel_spacing_mm, self.query_date, self.prior
        )


def search_options(
    service: ServiceDep,
    k: Annotated[int, Form(ge=1, description="How many people to return")] = 10,
    sex: Annotated[Sex | None, Form()] = None,
    birth_year_min: Annotated[int | None, Form(ge=1850, le=2100)] = None,
    birth_year_max: Annotated[int | None, Form(ge=1850, le=2100)] = None,
    body_part: Annotated[str | None, Form(max_length=32), NoNul] = None,
    side: Annotated[Side | None, Form()] = None,
    pixel_spacing_mm: Annotated[
        float | None,
        Form(ge=0.001, le=10, description="When the file does not say (PNG, JPEG)"),
    ] = None,
    query_date: Annotated[
        date | None,
        Form(
            description="When the query radiograph was taken, where the file does not say; "
            "overrides the file's date. The years between it and each candidate's image choose "
            "the calibration"
        ),
    ] = None,
    prior: Annotated[
        float | None,
        Form(
            gt=0,
            lt=1,
            description="Probability, before the search, that the person is in the gallery "
            "(default: the case's, else 0.5)",
        ),
    ] = None,
) -> SearchOptions:
    """The options of a search form, checked."""
    if k > service.settings.max_search_k:
        raise Unprocessable(f"k is {k}; at most {service.settings.max_search_k} people per search")
    filters = SearchFilters(
        sex=sex,
        birth_year_min=birth_year_min,
        birth_year_max=birth_year_max,
        body_part=normal_body_part(body_part),
        side=side,
    )
    return SearchOptions(k, filters, pixel_spacing_mm, query_date, prior)


SearchOptionsForm = Annotated[SearchOptions, Depends(search_options)]


def search_request(
    service: ServiceDep,
    options: SearchOptionsForm,
    file: Annotated[UploadFile, File(description="The unknown person's radiograph")],
) -> SearchQuery:
    """The multipart form of a search, checked; shared by /search and /cases/{id}/searches."""
    return options.query(read_upload(file, service.settings.max_upload_bytes))


SearchForm = Annotated[SearchQuery, Depends(search_request)]


def run_search(
    service: Service, query: SearchQuery, key_id: int, case_id: int | None = None
) -> SearchAnswer:
    return search(
        records=service.records,
        matcher=service.matcher,
        metrics=service.metrics,
        query=query,
        key_id=key_id,
        case_id=case_id,
    )


@router.post("/search", response_model=SearchOut, responses=refusals(400, 413, 415, 422, 429))
def search_gallery(service: ServiceDep, key: AnyKey, form: SearchForm) -> dict:
    return run_search(service, form, key.id).as_json()


@router.get("/searches/{search_id}", response_model=SearchOut, responses=refusals(404))
def get_search(search_id: PathId, service: ServiceDep, key: AnyKey) -> dict:
    """A stored search's answer, as sent; masked while you review it with sequential unmasking."""
    with service.records.sessions() as session:
        answer = stored_search(session, search_id)
        return answer_as_seen(answer, search_sight(session, answer, key.id))


@router.post(
    "/searches/{search_id}/rerun",
    response_model=RerunOut,
    responses={
        404: {"description": "No such search"},
        409: {
            "description": "The stored query or the search's model checkpoint is unusable, or "
            "you review the search with sequential unmasking"
        },
        410: {"description": "The stored query image is no longer stored"},
        **refusals(429),
    },
)
def rerun_search(search_id: PathId, service: ServiceDep, key: AnyKey) -> dict:
    """Re-run a stored search exactly, with the model version and index generation it used, and
    say whether the answer is identical; then against today's model and gallery, and explain
    every difference from the stored answer. Nothing is stored but an audit entry. Refused (409)
    while you review the search with sequential unmasking."""
    refuse_if_masked(service, search_id, key.id, "its re-run shows the ranking")
    answer = rerun(
        records=service.records, matcher=service.matcher, search_id=search_id, key_id=key.id
    )
    return answer.as_json()


def refuse_if_masked(service: Service, search_id: int, key_id: int, why: str) -> None:
    """409 while the key reviews this search with sequential unmasking."""
    with service.records.sessions() as session:
        if search_sight(session, stored_search(session, search_id), key_id).masking(search_id):
            raise Conflict(
                f"you review search {search_id} with sequential unmasking: {why}, which you see "
                "once you have recorded your conclusion"
            )


@router.get(
    "/searches/{search_id}/candidates/{person_id}/explanation",
    response_model=ExplanationOut,
    responses=refusals(404, 409, 410, 413, 422, 429),
)
def explain_candidate(
    search_id: PathId,
    person_id: PathId,
    service: ServiceDep,
    key: AnyKey,
    image_id: Annotated[
        int | None,
        Query(ge=1, le=MAX_ROW_ID, description="The candidate's image (default: their best)"),
    ] = None,
) -> dict:
    """Where the similarity of the query and one of the candidate's images comes from: for each
    image, a map over the network's last feature grid whose cells are their shares of the cosine
    similarity (positive: alike, negative: unlike) and sum to it exactly, recomputed with the
    model version that answered the search. `region` is the square of the original, in its
    pixels, that the network saw and the map covers."""
    refuse_if_masked(service, search_id, key.id, "the explanation shows the similarity")
    return explain(
        records=service.records,
        matcher=service.matcher,
        search_id=search_id,
        person_id=person_id,
        image_id=image_id,
    )


def _query_sha256(service: Service, search_id: int) -> str:
    """The sha256 of a search's query image, which is still stored."""
    return search_with_query(service.records, search_id).query_sha256


@router.get(
    "/searches/{search_id}/query",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **refusals(404, 410)},
)
@router.head("/searches/{search_id}/query", include_in_schema=False)
def get_query_original(
    search_id: PathId, request: Request, service: ServiceDep, _: AnyKey
) -> Response:
    """The query image exactly as uploaded."""
    sha256 = _query_sha256(service, search_id)
    return tagged_content(
        request,
        tag=sha256,
        body=lambda: service.records.originals.read(sha256),
        media_type="application/octet-stream",
        headers=ORIGINAL_CACHING,
    )


@router.get(
    "/searches/{search_id}/query/preview.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "8-bit greyscale, bone bright"},
        **refusals(404, 410, 413, 429),
    },
)
@router.head("/searches/{search_id}/query/preview.png", include_in_schema=False)
def get_query_preview(
    search_id: PathId,
    request: Request,
    service: ServiceDep,
    _: AnyKey,
    size: Annotated[int, Query(ge=32, le=4096, description="Longest side in pixels")] = 1024,
) -> Response:
    sha256 = _query_sha256(service, search_id)
    return tagged_content(
        request,
        tag=f"{sha256}.{size}",
        body=lambda: preview_png(service.matcher, service.records.originals.read(sha256), size),
        media_type="image/png",
        headers=PREVIEW_CACHING,
    )


@router.get(
    "/searches/{search_id}/query/facts",
    response_model=QueryFactsOut,
    responses=refusals(404, 410, 413, 429),
)
def get_query_facts(search_id: PathId, service: ServiceDep, _: AnyKey) -> dict:
    """The query radiograph's side, view, body part, sex, pixel spacing and date: from its header,
    else from the search form it was sent with."""
    return asdict(
        stored_query_facts(records=service.records, matcher=service.matcher, search_id=search_id)
    )
