"""Searching the gallery with a radiograph, and stored searches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from app.api import API_PREFIX
from app.api.deps import AnyKey, ServiceDep
from app.api.schemas import SearchOut, Sex, Side
from app.api.uploads import read_upload
from app.errors import Unprocessable
from app.search import SearchFilters, search, stored_search

router = APIRouter(prefix=API_PREFIX, tags=["search"])


@router.post("/search", response_model=SearchOut)
def search_gallery(
    service: ServiceDep,
    key: AnyKey,
    file: Annotated[UploadFile, File(description="The unknown person's radiograph")],
    k: Annotated[int, Form(ge=1, description="How many people to return")] = 10,
    sex: Annotated[Sex | None, Form()] = None,
    birth_year_min: Annotated[int | None, Form(ge=1850, le=2100)] = None,
    birth_year_max: Annotated[int | None, Form(ge=1850, le=2100)] = None,
    body_part: Annotated[str | None, Form(max_length=32)] = None,
    side: Annotated[Side | None, Form()] = None,
    pixel_spacing_mm: Annotated[
        float | None, Form(gt=0, le=10, description="When the file does not say (PNG, JPEG)")
    ] = None,
) -> dict:
    if k > service.settings.max_search_k:
        raise Unprocessable(f"k is {k}; at most {service.settings.max_search_k} people per search")
    data = read_upload(file, service.settings.max_upload_bytes)
    filters = SearchFilters(
        sex=sex,
        birth_year_min=birth_year_min,
        birth_year_max=birth_year_max,
        body_part=body_part.strip().upper() if body_part else None,
        side=side,
    )
    return search(service, data, k, filters, pixel_spacing_mm, key.id)


@router.get("/searches/{search_id}", response_model=SearchOut)
def get_search(search_id: int, service: ServiceDep, _: AnyKey) -> dict:
    with service.sessions() as session:
        return stored_search(session, search_id)
