"""Who is signed in, and who else examines: for the web page's sign-in and blind reviews."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from app.api import API_PREFIX
from app.api.deps import AnyKey, ServiceDep
from app.api.schemas.common import KeyOut, Limits, refusals
from app.storage.tables import ApiKey

router = APIRouter(prefix=API_PREFIX, tags=["keys"], responses=refusals(401, 503))


@router.get("/me", response_model=KeyOut)
def whoami(key: AnyKey) -> ApiKey:
    return key


@router.get("/limits", response_model=Limits)
def limits(service: ServiceDep, _: AnyKey) -> dict:
    """What the service accepts, so that a client can refuse a file before sending it."""
    settings = service.settings
    return {
        "max_upload_bytes": settings.max_upload_bytes,
        "max_search_k": settings.max_search_k,
        "max_pixels": settings.max_pixels,
        "max_decode_bytes": settings.max_decode_bytes,
    }


@router.get("/examiners", response_model=list[KeyOut])
def examiners(service: ServiceDep, _: AnyKey) -> list[ApiKey]:
    """Active keys by name and role (never the keys), to choose a blind reviewer."""
    with service.records.sessions() as session:
        return list(
            session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.id))
        )
