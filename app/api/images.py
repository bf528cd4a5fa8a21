"""Single images: the record, the original bytes, a preview for viewing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.api import API_PREFIX
from app.api.deps import AdminKey, AnyKey, DeletionReason, PathId, ServiceDep
from app.api.headers import ORIGINAL_CACHING, tagged_content
from app.api.schemas.common import Deleted, refusals
from app.api.schemas.people import ImageOut
from app.gallery.deletion import delete_image
from app.gallery.images import live_image, original_bytes
from app.gallery.previews import FILE_SUFFIXES, MEDIA_TYPES, PREVIEW_CACHING, preview_png
from app.storage.tables import Image

router = APIRouter(prefix=API_PREFIX, tags=["images"], responses=refusals(401, 503))


@router.get("/images/{image_id}", response_model=ImageOut, responses=refusals(404))
def get_image(image_id: PathId, service: ServiceDep, _: AnyKey) -> Image:
    with service.records.sessions() as session:
        return live_image(session, image_id)


@router.get(
    "/images/{image_id}/original",
    response_class=Response,
    responses={
        200: {
            "content": {media_type: {} for media_type in MEDIA_TYPES.values()},
            "description": "The bytes exactly as uploaded",
        },
        **refusals(404, 410),
    },
)
@router.head("/images/{image_id}/original", include_in_schema=False)
def get_original(image_id: PathId, request: Request, service: ServiceDep, _: AnyKey) -> Response:
    with service.records.sessions() as session:
        image = live_image(session, image_id)
    return tagged_content(
        request,
        tag=image.sha256,
        body=lambda: original_bytes(service.records, image),
        media_type=MEDIA_TYPES[image.format],
        headers={
            **ORIGINAL_CACHING,
            "Content-Disposition": f'attachment; filename="{image.sha256}.{FILE_SUFFIXES[image.format]}"',
        },
    )


@router.get(
    "/images/{image_id}/preview.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "8-bit greyscale, bone bright"},
        **refusals(404, 410, 413, 429),
    },
)
@router.head("/images/{image_id}/preview.png", include_in_schema=False)
def get_preview(
    image_id: PathId,
    request: Request,
    service: ServiceDep,
    _: AnyKey,
    size: Annotated[int, Query(ge=32, le=4096, description="Longest side in pixels")] = 1024,
) -> Response:
    with service.records.sessions() as session:
        image = live_image(session, image_id)
    return tagged_content(
        request,
        tag=f"{image.sha256}.{size}",
        body=lambda: preview_png(service.matcher, original_bytes(service.records, image), size),
        media_type="image/png",
        headers=PREVIEW_CACHING,
    )


@router.delete("/images/{image_id}", response_model=Deleted, responses=refusals(403, 404))
def remove_image(
    image_id: PathId,
    service: ServiceDep,
    key: AdminKey,
    reason: DeletionReason,
    purge: Annotated[bool, Query(description="Also delete the original file")] = False,
) -> dict:
    image = delete_image(
        service.records,
        service.matcher,
        image_id=image_id,
        reason=reason,
        purge=purge,
        key_id=key.id,
    )
    return {"id": image.id, "deleted_at": image.deleted_at, "purged": purge}
