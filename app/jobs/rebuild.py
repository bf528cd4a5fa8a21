"""Index rebuild: build the active model's index afresh from the stored embeddings (embedding the
images that lack one first), verify it id by id against the database, and publish it. Servers load
a published build and swap it in; until then they search with the index they have."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.core.errors import Conflict
from app.jobs.queue import SUCCEEDED, RunningJob
from app.serving.index import build_from_database, check_consistency, snapshot_path
from app.serving.model_versions import active_version, load_model
from app.serving.service import Service
from app.storage.tables import Job, ModelVersion
from model.inference import EmbeddingModel


def rebuild_index(service: Service, job: RunningJob) -> dict[str, Any]:
    with service.records.sessions() as session:
        version = active_version(session)
    if version is None:
        raise Conflict("no model is active, so there is no index to rebuild")
    model = load_model(version, service.settings)
    return build_and_publish(service, job, version, model)


def build_and_publish(
    service: Service, job: RunningJob, version: ModelVersion, model: EmbeddingModel
) -> dict[str, Any]:
    """Embed what the version lacks, build its index, verify it, write the snapshot and publish
    the build: servers serving this version load it."""
    job.progress(0, None, f"embedding images that lack model version {version.id}'s embedding")
    embedded = service.matcher.embed_missing(
        model,
        version,
        progress=lambda done, total: job.progress(done, total, "embedding images"),
    )
    job.log(f"embedded {embedded} images with model version {version.id}")
    job.progress(0, None, "building the index")
    with service.records.sessions() as session:
        index = build_from_database(
            session, version.id, version.dimension, service.settings.index_options
        )
        consistency = check_consistency(index, session)
    if not consistency.ok:
        raise RuntimeError(f"the rebuilt index disagrees with the database: {consistency}")
    job.log(f"{index.kind} index of {index.size} images at generation {index.generation} verified")
    index.save(snapshot_path(service.settings.index_dir, version.id))
    job.progress(index.size, index.size, "publishing the index")
    with service.records.sessions.begin() as session:
        build = publish_build(session, version.id, job)
    job.log(f"published index build {build}")
    job.conclude(
        f"{index.kind} index of {index.size:,} images (generation {index.generation}) "
        f"published as build {build} of model version {version.id}"
    )
    return {
        "model_version_id": version.id,
        "images": index.size,
        "index": index.description(),
        "index_generation": index.generation,
        "index_build": build,
        "embedded": embedded,
    }


def publish_build(session: Session, version_id: int, job: RunningJob) -> int:
    build = session.execute(
        ModelVersion.__table__.update()
        .where(ModelVersion.id == version_id)
        .values(index_build=ModelVersion.index_build + 1)
        .returning(ModelVersion.index_build)
    ).scalar_one()
    record_entry(
        session,
        key_id=job.key_id,
        action="index.publish",
        target_type="model_version",
        target_id=version_id,
        details={"index_build": build, "job_id": job.id},
    )
    return build


def last_publishing_job(session: Session, version_id: int) -> Job | None:
    """The newest succeeded job that published an index build of this version (a rebuild, or
    the activation that built its first): its finished_at is when the build was published. The
    jobs table is small; the audit log, which also records it, is not indexed by action."""
    published = session.scalars(
        select(Job)
        .where(Job.kind.in_(("index_rebuild", "model_activation")), Job.status == SUCCEEDED)
        .order_by(Job.finished_at.desc(), Job.id.desc())
    )
    for job in published:
        if (job.result or {}).get("model_version_id") == version_id:
            return job
    return None
