"""Admin: the DICOMweb servers (a hospital's PACS) to pull a person's radiographs from, and
pulling them, as a job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.api import API_PREFIX
from app.api.deps import AdminKey, ServiceDep
from app.api.schemas.admin import JobOut
from app.api.schemas.common import refusals
from app.api.schemas.dicomweb import DicomWebServerCreate, DicomWebServerOut, PullCreate
from app.dicom.servers import (
    all_servers,
    check_patient_id,
    register_server,
    remove_server,
    server_named,
)
from app.jobs.queue import enqueue
from app.storage.tables import DicomWebServer, Job

router = APIRouter(
    prefix=f"{API_PREFIX}/admin/dicomweb", tags=["admin"], responses=refusals(401, 403, 503)
)

ServerName = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


@router.post(
    "/servers",
    status_code=201,
    response_model=DicomWebServerOut,
    responses=refusals(400, 409, 422),
)
def add_server(body: DicomWebServerCreate, service: ServiceDep, key: AdminKey) -> DicomWebServer:
    """Register a server; its credentials are kept, and never shown again."""
    with service.records.sessions.begin() as session:
        return register_server(
            session,
            name=body.name,
            base_url=body.base_url,
            auth=body.auth.model_dump(),
            issuer=body.issuer,
            key_id=key.id,
        )


@router.get("/servers", response_model=list[DicomWebServerOut])
def list_servers(service: ServiceDep, _: AdminKey) -> list[DicomWebServer]:
    with service.records.sessions() as session:
        return all_servers(session)


@router.delete("/servers/{name}", response_model=DicomWebServerOut, responses=refusals(404))
def forget_server(name: ServerName, service: ServiceDep, key: AdminKey) -> DicomWebServer:
    """Remove a server and its credentials; the radiographs pulled from it stay."""
    with service.records.sessions.begin() as session:
        return remove_server(session, name=name, key_id=key.id)


@router.post(
    "/servers/{name}/pulls",
    status_code=202,
    response_model=JobOut,
    responses=refusals(400, 404, 422),
)
def start_pull(name: ServerName, body: PullCreate, service: ServiceDep, key: AdminKey) -> Job:
    """Pull every radiograph of one patient of this server into the gallery, as one person's
    ante-mortem images: a job (kind dicomweb_pull) whose result lists what was stored and what
    was refused, and why. Pulling again fetches only what is not stored yet."""
    patient_id = check_patient_id(body.patient_id)
    with service.records.sessions.begin() as session:
        server_named(session, name)
        return enqueue(session, "dicomweb_pull", {"server": name, "patient_id": patient_id}, key.id)
