"""A case's inbox: the radiographs received for it by DICOM, and searching with one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.api import API_PREFIX
from app.api.deps import AnyKey, PathId, ServiceDep
from app.api.headers import ORIGINAL_CACHING, tagged_content
from app.api.schemas.common import refusals
from app.api.schemas.dicom import InboxItemOut
from app.api.schemas.searches import SearchOut
from app.api.searches import SearchOptionsForm, run_search
from app.dicom.inbox import inbox, inbox_item, item_bytes
from app.gallery.previews import PREVIEW_CACHING, preview_png
from app.storage.tables import InboxItem

router = APIRouter(prefix=f"{API_PREFIX}/cases", tags=["cases"], responses=refusals(401, 503))


@router.get("/{case_id}/inbox", response_model=list[InboxItemOut], responses=refusals(404))
def list_inbox(case_id: PathId, service: ServiceDep, _: AnyKey) -> list[InboxItem]:
    with service.records.sessions() as session:
        return inbox(session, case_id)


@router.get(
    "/{case_id}/inbox/{item_id}/original",
    response_class=Response,
    responses={200: {"content": {"application/dicom": {}}}, **refusals(404, 410)},
)
@router.head("/{case_id}/inbox/{item_id}/original", include_in_schema=False)
def get_inbox_original(
    case_id: PathId, item_id: PathId, request: Request, service: ServiceDep, _: AnyKey
) -> Response:
    """The radiograph exactly as received."""
    with service.records.sessions() as session:
        sha256 = inbox_item(session, case_id, item_id).sha256
    return tagged_content(
        request,
        tag=sha256,
        body=lambda: item_bytes(service.records, case_id, item_id),
        media_type="application/dicom",
        headers=ORIGINAL_CACHING,
    )


@router.get(
    "/{case_id}/inbox/{item_id}/preview.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **refusals(404, 410, 413, 429)},
)
@router.head("/{case_id}/inbox/{item_id}/preview.png", include_in_schema=False)
def get_inbox_preview(
    case_id: PathId,
    item_id: PathId,
    request: Request,
    service: ServiceDep,
    _: AnyKey,
    size: Annotated[int, Query(ge=32, le=4096, description="Longest side in pixels")] = 1024,
) -> Response:
    with service.records.sessions() as session:
        sha256 = inbox_item(session, case_id, item_id).sha256
    return tagged_content(
        request,
        tag=f"{sha256}.{size}",
        body=lambda: preview_png(
            service.matcher, item_bytes(service.records, case_id, item_id), size
        ),
        media_type="image/png",
        headers=PREVIEW_CACHING,
    )


@router.post(
    "/{case_id}/inbox/{item_id}/searches",
    response_model=SearchOut,
    responses=refusals(404, 410, 413, 415, 422, 429),
)
def search_with_item(
    case_id: PathId, item_id: PathId, service: ServiceDep, key: AnyKey, options: SearchOptionsForm
) -> dict:
    """Search the gallery with a received radiograph; the search is kept with the case."""
    query = options.query(item_bytes(service.records, case_id, item_id))
    return run_search(service, query, key.id, case_id).as_json()
