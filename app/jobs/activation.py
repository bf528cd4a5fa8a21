"""Model activation: re-embed every live image with the chosen version, build and verify its
index, then make it the active version in one transaction. Servers switch to it on their next
sync; the previous version keeps its embeddings and index, so activating it again is a rollback
that only embeds what was uploaded since."""

from __future__ import annotations

from typing import Any

from app.core.errors import NotFound
from app.jobs.queue import RunningJob
from app.jobs.rebuild import build_and_publish
from app.serving.model_versions import activate, active_version, load_model
from app.serving.service import Service
from app.storage.tables import ModelVersion


def activate_model(service: Service, job: RunningJob) -> dict[str, Any]:
    version_id = job.parameters["model_version_id"]
    with service.records.sessions() as session:
        version = session.get(ModelVersion, version_id)
        previous = active_version(session)
    if version is None:
        raise NotFound(f"no model version with id {version_id}")
    model = load_model(version, service.settings)
    result = build_and_publish(service, job, version, model)
    with service.records.sessions.begin() as session:
        activate(session, session.get(ModelVersion, version_id), job.key_id)
    job.log(f"model version {version_id} is active")
    job.conclude(
        f"model version {version_id} is active, with its index of {result['images']:,} images "
        f"(build {result['index_build']})"
    )
    # Uploads that servers embedded with the previous model until they switched.
    late = service.matcher.embed_missing(model, version)
    return {
        **result,
        "previous_version": previous.id if previous is not None else None,
        "embedded_after_switch": late,
    }
