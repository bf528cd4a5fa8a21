"""People in the case database and their images."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from sqlalchemy import select

from app.api import API_PREFIX
from app.api.deps import AdminKey, AnyKey, DeletionReason, PathId, ServiceDep
from app.api.paging import Limit, Offset, page
from app.api.schemas.common import (
    EXTERNAL_REF_LENGTH,
    Deleted,
    ExternalRef,
    NoNul,
    Sex,
    Side,
    refusals,
)
from app.api.schemas.people import (
    Appearance,
    ImageOut,
    PeoplePage,
    PersonCreate,
    PersonDetail,
    PersonOut,
)
from app.api.uploads import body_part as normal_body_part
from app.api.uploads import display_name, read_upload
from app.cases.reviews import masked_search_ids
from app.gallery.deletion import delete_person
from app.gallery.images import ImageFields, ingest_image
from app.gallery.people import add_person, live_person
from app.search.filters import SearchFilters
from app.storage.tables import Case, Person, Search, SearchResult

router = APIRouter(prefix=API_PREFIX, tags=["people"], responses=refusals(401, 503))


@router.post("/people", status_code=201, response_model=PersonOut, responses=refusals(400, 409))
def create_person(body: PersonCreate, service: ServiceDep, key: AnyKey) -> Person:
    with service.records.sessions.begin() as session:
        return add_person(session, key_id=key.id, **body.model_dump())


@router.get("/people", response_model=PeoplePage)
def list_people(
    service: ServiceDep,
    _: AnyKey,
    limit: Limit = 50,
    offset: Offset = 0,
    external_ref: Annotated[
        str | None,
        Query(max_length=EXTERNAL_REF_LENGTH, description="exact match, after normalisation"),
        NoNul,
        ExternalRef,
    ] = None,
    sex: Sex | None = None,
    birth_year_min: Annotated[int | None, Query(ge=1850, le=2100)] = None,
    birth_year_max: Annotated[int | None, Query(ge=1850, le=2100)] = None,
) -> dict:
    filters = SearchFilters(sex=sex, birth_year_min=birth_year_min, birth_year_max=birth_year_max)
    query = select(Person).where(Person.deleted_at.is_(None), *filters.person_conditions())
    if external_ref is not None:
        query = query.where(Person.external_ref == external_ref)
    with service.records.sessions() as session:
        return page(session, query, Person.id, limit, offset)


@router.get("/people/{person_id}", response_model=PersonDetail, responses=refusals(404))
def get_person(person_id: PathId, service: ServiceDep, _: AnyKey) -> dict:
    with service.records.sessions() as session:
        person = live_person(session, person_id)
        images = [im for im in person.images if im.deleted_at is None]
        return {**PersonOut.model_validate(person).model_dump(), "images": images}


@router.get(
    "/people/{person_id}/searches", response_model=list[Appearance], responses=refusals(404)
)
def person_in_searches(person_id: PathId, service: ServiceDep, key: AnyKey) -> list[dict]:
    """The searches this person was a candidate in, newest first, with the rank they had; not
    those you review with sequential unmasking, until you have concluded."""
    with service.records.sessions() as session:
        live_person(session, person_id)
        masked = masked_search_ids(session, key.id)
        rows = session.execute(
            select(SearchResult, Search.case_id, Case.number, Search.created_at)
            .join(Search, Search.id == SearchResult.search_id)
            .outerjoin(Case, Case.id == Search.case_id)
            .where(SearchResult.person_id == person_id)
            .order_by(Search.id.desc())
            .limit(500)
        ).all()
    return [
        {
            "search_id": result.search_id,
            "case_id": case_id,
            "case_number": case_number,
            "created_at": created_at,
            "rank": result.rank,
            "similarity": result.similarity,
        }
        for result, case_id, case_number, created_at in rows
        if result.search_id not in masked
    ]


@router.post(
    "/people/{person_id}/images",
    status_code=201,
    response_model=None,
    responses={
        200: {"model": ImageOut, "description": "These bytes were already stored for this person"},
        201: {"model": ImageOut, "description": "Stored"},
        **refusals(400, 404, 413, 415, 422, 429),
    },
)
def upload_image(
    person_id: PathId,
    service: ServiceDep,
    key: AnyKey,
    response: Response,
    file: Annotated[UploadFile, File(description="One radiograph: DICOM, PNG, JPEG or TIFF")],
    body_part: Annotated[
        str | None, Form(max_length=32, description="e.g. KNEE, CHEST"), NoNul
    ] = None,
    side: Annotated[Side | None, Form()] = None,
    acquisition_date: Annotated[date | None, Form()] = None,
    visit_months: Annotated[float | None, Form(ge=0, le=2000)] = None,
    pixel_spacing_mm: Annotated[
        float | None,
        Form(ge=0.001, le=10, description="When the file does not say (PNG, JPEG)"),
    ] = None,
):
    part = normal_body_part(body_part)
    data = read_upload(file, service.settings.max_upload_bytes)
    fields = ImageFields(
        body_part=part,
        side=side,
        acquisition_date=acquisition_date,
        visit_months=visit_months,
        pixel_spacing_mm=pixel_spacing_mm,
        filename=display_name(file.filename),
    )
    image, created = ingest_image(
        records=service.records,
        matcher=service.matcher,
        metrics=service.metrics,
        person_id=person_id,
        data=data,
        fields=fields,
        key_id=key.id,
    )
    if not created:
        response.status_code = 200
    return ImageOut.model_validate(image)


@router.delete("/people/{person_id}", response_model=Deleted, responses=refusals(403, 404))
def remove_person(
    person_id: PathId,
    service: ServiceDep,
    key: AdminKey,
    reason: DeletionReason,
    purge: Annotated[bool, Query(description="Also delete the original files")] = False,
) -> dict:
    person = delete_person(
        service.records,
        service.matcher,
        person_id=person_id,
        reason=reason,
        purge=purge,
        key_id=key.id,
    )
    return {"id": person.id, "deleted_at": person.deleted_at, "purged": purge}
