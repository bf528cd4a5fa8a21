"""Request dependencies: the service, the caller's API key with its role, and ids in paths."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, Security
from fastapi.security import APIKeyHeader

from app.access.keys import authenticate
from app.access.throttle import FailedKeyLimiter
from app.api.schemas.common import MAX_ROW_ID, NoNul
from app.serving.service import Service
from app.storage.tables import ApiKey

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


def get_service(request: Request) -> Service:
    return request.app.state.service


def key_limiter(request: Request) -> FailedKeyLimiter:
    return request.app.state.key_limiter


def current_key(
    request: Request,
    service: Annotated[Service, Depends(get_service)],
    limiter: Annotated[FailedKeyLimiter, Depends(key_limiter)],
    key: Annotated[str | None, Security(_api_key_header)],
) -> ApiKey:
    address = request.client.host if request.client is not None else ""
    wait = limiter.retry_after(address)
    if wait is not None:
        service.metrics.throttled_keys.inc()
        raise HTTPException(
            429,
            f"too many wrong API keys from {address}: at most {limiter.failures_allowed} in "
            f"{limiter.window_seconds:g} s; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    if not key:
        raise HTTPException(401, "send an API key in the X-API-Key header")
    with service.records.sessions() as session:
        row = authenticate(session, key)
    if row is None:
        service.metrics.refused_keys.inc()
        limiter.record_failure(address)
        raise HTTPException(401, "the API key is not valid or was revoked")
    return row


def admin_key(key: Annotated[ApiKey, Depends(current_key)]) -> ApiKey:
    if key.role != "admin":
        raise HTTPException(403, f"this needs an admin key; key {key.name!r} is an examiner's")
    return key


ServiceDep = Annotated[Service, Depends(get_service)]
AnyKey = Annotated[ApiKey, Depends(current_key)]
AdminKey = Annotated[ApiKey, Depends(admin_key)]
# A row id in a path: 1..MAX_ROW_ID, like every id in a request body (schemas.RowId).
PathId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
# Every deletion says why, in the audit log.
DeletionReason = Annotated[
    str, Query(min_length=3, max_length=2000, description="Why, for the audit log"), NoNul
]
