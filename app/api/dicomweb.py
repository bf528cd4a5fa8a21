"""DICOMweb in: STOW-RS (PS3.18 10.5) into the gallery or a case's inbox, with any API key."""

from __future__ import annotations

import json
import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from app.api import API_PREFIX
from app.api.deps import AnyKey, PathId, ServiceDep
from app.api.schemas.common import Problem, refusals
from app.core.errors import ClientError
from app.dicom.arrival import Arrival, Destination
from app.dicom.intake import Received
from app.dicom.stow import (
    DICOM,
    DICOM_JSON,
    StoreOutcome,
    boundary_of,
    store_instances,
    store_response,
)
from app.serving.service import Service
from app.storage.tables import ApiKey

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

# A body this small stays in memory; a larger one goes to a temporary file as it arrives.
SPOOL_IN_MEMORY = 8 * 1024 * 1024
StudyUid = Annotated[
    str, Path(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64, description="StudyInstanceUID")
]

_STORE_RESPONSE = "The Store Instances Response (PS3.18 Annex I), application/dicom+json"
STOW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {DICOM_JSON: {}}, "description": f"Every instance stored. {_STORE_RESPONSE}"},
    202: {
        "content": {DICOM_JSON: {}},
        "description": "Some instances stored, others not: each failed one is in the Failed SOP "
        "Sequence (0008,1198) with its Failure Reason (0008,1197): 0x0122 not a radiograph's SOP "
        "class, 0xA700 try again later (no model active, disk full), 0xA900 another study or "
        "patient than this request or person allows, or a multi-frame object, 0xC000 not a "
        "readable DICOM object; the reason in words is in the private element (0009,1001) "
        'of creator "RADMATCH"',
    },
    409: {"content": {DICOM_JSON: {}}, "description": f"No instance stored. {_STORE_RESPONSE}"},
    400: {"model": Problem, "description": "The body is not a complete multipart body"},
    413: {
        "model": Problem,
        "description": "The body, or one instance in it, is over the service's limits "
        "(GET /api/v1/limits); nothing was stored",
    },
    415: {
        "model": Problem,
        "description": f'The body is not multipart/related; type="{DICOM}"',
    },
    **refusals(401, 503),
}


@router.post("/studies", response_class=Response, responses=STOW_RESPONSES)
async def store_into_gallery(request: Request, service: ServiceDep, key: AnyKey) -> Response:
    """Known people's radiographs: each instance goes to the gallery person its PatientID names
    (under its IssuerOfPatientID, else RADMATCH_DICOM_ISSUER), created at their first image."""
    destination = Destination(issuer=service.settings.dicom_issuer)
    return await _stow(request, service, key, destination, None)


@router.post("/studies/{study_uid}", response_class=Response, responses=STOW_RESPONSES)
async def store_study_into_gallery(
    study_uid: StudyUid, request: Request, service: ServiceDep, key: AnyKey
) -> Response:
    """As POST /dicomweb/studies, for instances of this one study only."""
    destination = Destination(issuer=service.settings.dicom_issuer)
    return await _stow(request, service, key, destination, study_uid)


@router.post(
    "/cases/{case_id}/studies",
    response_class=Response,
    responses={**STOW_RESPONSES, **refusals(404)},
)
async def store_into_inbox(
    case_id: PathId, request: Request, service: ServiceDep, key: AnyKey
) -> Response:
    """The unknown person's radiographs, into the case's inbox."""
    return await _stow(request, service, key, Destination(case_id=case_id), None)


@router.post(
    "/cases/{case_id}/studies/{study_uid}",
    response_class=Response,
    responses={**STOW_RESPONSES, **refusals(404)},
)
async def store_study_into_inbox(
    case_id: PathId, study_uid: StudyUid, request: Request, service: ServiceDep, key: AnyKey
) -> Response:
    """As POST /dicomweb/cases/{case_id}/studies, for instances of this one study only."""
    return await _stow(request, service, key, Destination(case_id=case_id), study_uid)


async def _stow(
    request: Request,
    service: Service,
    key: ApiKey,
    destination: Destination,
    study_uid: str | None,
) -> Response:
    boundary = boundary_of(request.headers.get("content-type", ""))
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as body:
        # The body limit (app.main.LimitRequestBody) cuts the stream off while it arrives.
        try:
            async for chunk in request.stream():
                body.write(chunk)
        except ClientDisconnect:
            raise ClientError("the client went away before the body was complete") from None
        outcome: StoreOutcome = await run_in_threadpool(
            lambda: store_instances(
                records=service.records,
                matcher=service.matcher,
                metrics=service.metrics,
                body=body,
                boundary=boundary,
                destination=destination,
                arrival=Arrival("stow-rs", key.name, key.id),
                study_instance_uid=study_uid,
                part_limit=service.settings.max_upload_bytes,
            )
        )
    base = str(request.base_url).rstrip("/")

    def retrieve_url(received: Received) -> str:
        if received.inbox_item_id is not None:
            return (
                f"{base}{API_PREFIX}/cases/{destination.case_id}/inbox/"
                f"{received.inbox_item_id}/original"
            )
        return f"{base}{API_PREFIX}/images/{received.image_id}/original"

    return Response(
        json.dumps(store_response(outcome, retrieve_url)),
        status_code=outcome.http_status,
        media_type=DICOM_JSON,
    )
