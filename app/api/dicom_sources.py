"""Admin: the DICOM application entities allowed to send radiographs by C-STORE."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import API_PREFIX
from app.api.deps import AdminKey, PathId, ServiceDep
from app.api.schemas.common import refusals
from app.api.schemas.dicom import DicomSourceCreate, DicomSourceOut
from app.dicom.arrival import Destination
from app.dicom.sources import live_sources, register_source, revoke_source
from app.storage.tables import DicomSource

router = APIRouter(prefix=f"{API_PREFIX}/admin/dicom", tags=["admin"], responses=refusals(401, 403))


@router.post(
    "/sources",
    status_code=201,
    response_model=DicomSourceOut,
    responses=refusals(400, 404, 409, 422),
)
def add_source(body: DicomSourceCreate, service: ServiceDep, key: AdminKey) -> DicomSource:
    """Allow a calling AE title to send; its images go to a case's inbox or to the gallery."""
    with service.records.sessions.begin() as session:
        return register_source(
            session,
            ae_title=body.ae_title,
            destination=Destination(case_id=body.case_id, issuer=body.issuer),
            description=body.description,
            key_id=key.id,
        )


@router.get("/sources", response_model=list[DicomSourceOut])
def list_sources(service: ServiceDep, _: AdminKey) -> list[DicomSource]:
    with service.records.sessions() as session:
        return live_sources(session)


@router.delete("/sources/{source_id}", response_model=DicomSourceOut, responses=refusals(404))
def remove_source(source_id: PathId, service: ServiceDep, key: AdminKey) -> DicomSource:
    """Revoke: the receiver refuses the AE title's next association."""
    with service.records.sessions.begin() as session:
        return revoke_source(session, source_id=source_id, key_id=key.id)
