"""Admin endpoints: jobs (index rebuild, retraining, model activation), model versions. Starting
work returns 202 with the job; a worker (`radmatch worker`, or `radmatch serve --worker`) runs it.
Every action goes to the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.api import API_PREFIX
from app.api.deps import AdminKey, PathId, ServiceDep
from app.api.paging import Limit, Offset, page
from app.api.registration import load_registrable
from app.api.schemas.admin import (
    JobOut,
    JobsPage,
    ModelRegister,
    ModelVersionOut,
    TrainingJobCreate,
)
from app.api.schemas.common import NoNul, refusals
from app.core.errors import NotFound, Unprocessable
from app.evidence.calibrations import newest_row, summary
from app.jobs.queue import enqueue, enqueue_unless_unfinished, request_cancel
from app.jobs.rebuild import last_publishing_job
from app.serving.model_versions import register, registrable_checkpoint
from app.serving.service import Service
from app.storage.tables import Embedding, Job, ModelVersion
from model.int8 import int8_status

router = APIRouter(prefix=f"{API_PREFIX}/admin", tags=["admin"], responses=refusals(401, 403, 503))

JobStatus = Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|cancelled)$")]


def _start(service: Service, kind: str, parameters: dict[str, Any], key_id: int) -> Job:
    with service.records.sessions.begin() as session:
        return enqueue(session, kind, parameters, key_id)


@router.post("/index/rebuild", status_code=202, response_model=JobOut, responses=refusals(409))
def rebuild_index(service: ServiceDep, key: AdminKey) -> Job:
    """Rebuild the active model's index from the stored embeddings, verify it, switch to it.
    Searches go on with the current index meanwhile. While a rebuild is queued or running, a
    second request queues nothing: 409, naming that job (it rebuilds from every embedding
    stored when it runs, so it does what the second request asks)."""
    with service.records.sessions.begin() as session:
        return enqueue_unless_unfinished(
            session, kind="index_rebuild", parameters={}, key_id=key.id
        )


@router.post("/training-jobs", status_code=202, response_model=JobOut, responses=refusals(400, 422))
def start_training(body: TrainingJobCreate, service: ServiceDep, key: AdminKey) -> Job:
    """Train a new model on the case database (split by person) or on a manifest; the result is
    registered as a model version with its validation metrics, not activated."""
    from app.jobs.training import check_training_options  # loads the training code

    check_training_options(body.preset, body.overrides)
    if body.manifest is not None and not is_file(body.manifest):
        raise Unprocessable(f"no manifest file at {body.manifest!r} on the server")
    return _start(service, "training", body.model_dump(), key.id)


@router.get("/models", response_model=list[ModelVersionOut])
def list_models(service: ServiceDep, _: AdminKey) -> list[dict]:
    with service.records.sessions() as session:
        versions = session.scalars(select(ModelVersion).order_by(ModelVersion.id)).all()
        return [_model_out(session, version) for version in versions]


@router.post(
    "/models", status_code=201, response_model=ModelVersionOut, responses=refusals(400, 422)
)
def register_model(body: ModelRegister, service: ServiceDep, key: AdminKey) -> dict:
    """Register a checkpoint file from `radmatch train` (the same file twice is one version),
    with the calibration it carries; with a calibration manifest, a calibration job fits one on
    that manifest's people (GET /admin/jobs?kind=calibration)."""
    manifest = body.calibration_manifest
    if manifest is not None and not is_file(manifest):
        raise Unprocessable(f"no calibration manifest at {manifest!r} on the server")
    checkpoint = registrable_checkpoint(
        body.checkpoint_path,
        models_dir=service.settings.registrable_models_dir,
        max_bytes=service.settings.max_checkpoint_bytes,
    )
    model = load_registrable(checkpoint, body.checkpoint_path)
    with service.records.sessions.begin() as session:
        version = register(session, model, key.id)
        if manifest is not None:
            parameters = {
                "model_version_id": version.id,
                "manifest": manifest,
                "method": body.calibration_method,
            }
            enqueue(session, "calibration", parameters, key.id)
        return _model_out(session, version)


@router.post(
    "/models/{version_id}/activate",
    status_code=202,
    response_model=JobOut,
    responses=refusals(404),
)
def activate_model(version_id: PathId, service: ServiceDep, key: AdminKey) -> Job:
    """Re-embed every image with this version, build and verify its index, then make it the
    active model in one step. The previous version stays registered, with its embeddings: activate
    it again to roll back."""
    with service.records.sessions() as session:
        if session.get(ModelVersion, version_id) is None:
            raise NotFound(f"no model version with id {version_id}")
    return _start(service, "model_activation", {"model_version_id": version_id}, key.id)


@router.get("/jobs", response_model=JobsPage)
def list_jobs(
    service: ServiceDep,
    _: AdminKey,
    status: JobStatus = None,
    kind: Annotated[str | None, Query(max_length=30), NoNul] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict:
    query = select(Job)
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    with service.records.sessions() as session:
        return page(session, query, Job.id.desc(), limit, offset)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=refusals(404))
def get_job(job_id: PathId, service: ServiceDep, _: AdminKey) -> Job:
    with service.records.sessions() as session:
        return _job(session, job_id)


@router.post(
    "/jobs/{job_id}/cancel", status_code=202, response_model=JobOut, responses=refusals(404, 409)
)
def cancel_job(job_id: PathId, service: ServiceDep, key: AdminKey) -> Job:
    """Cancel a queued job; a running one stops at its next progress report."""
    with service.records.sessions.begin() as session:
        return request_cancel(session, _job(session, job_id), key.id)


def _job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def _model_out(session: Session, version: ModelVersion) -> dict:
    """The version with how many images have its embedding (a registered file may be one that
    was registered and used before)."""
    embedded = session.scalar(
        select(func.count()).where(
            Embedding.model_version_id == version.id, Embedding.removed_generation.is_(None)
        )
    )
    columns = ModelVersionOut.model_fields.keys() - {
        "embedded_images",
        "calibration",
        "int8",
        "index_published_at",
        "index_published_by_job",
    }
    calibration = newest_row(session, version.id)
    published = last_publishing_job(session, version.id)
    return {name: getattr(version, name) for name in columns} | {
        "embedded_images": embedded,
        "calibration": None if calibration is None else summary(calibration),
        "index_published_at": None if published is None else published.finished_at,
        "index_published_by_job": None if published is None else published.id,
        "int8": int8_status(version.sha256, Path(version.checkpoint_path)),
    }


def is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except OSError:  # a name too long for the file system, for one
        return False
