"""Refitting a model version's calibration on a manifest of people it was never trained on: embed
their images with the version's model, score every pair, fit, and store the result as the
version's newest calibration. Searches from then on use it; earlier searches keep the one they
recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.core.errors import NotFound, Unprocessable
from app.evidence.calibrations import add_calibration
from app.jobs.queue import RunningJob
from app.serving.model_versions import load_model
from app.serving.service import Service
from app.storage.tables import ModelVersion
from training.calibration.fitting import calibration_payload, manifest_calibration_records
from training.embedders import network_embedder


def calibrate_model(service: Service, job: RunningJob) -> dict[str, Any]:
    version_id = job.parameters["model_version_id"]
    manifest = Path(job.parameters["manifest"])
    with service.records.sessions() as session:
        version = session.get(ModelVersion, version_id)
    if version is None:
        raise NotFound(f"no model version with id {version_id}")
    model = load_model(version, service.settings)
    try:
        records, source = manifest_calibration_records(
            manifest, trained_on_sha256=version.info.get("manifest_sha256")
        )
    except (ValueError, OSError) as error:
        raise Unprocessable(f"cannot calibrate on {manifest}: {error}") from None
    job.log(f"{len({r.person_id for r in records})} people, {len(records)} images in {manifest}")
    job.progress(0, None, "embedding the calibration images")
    embed = network_embedder(model.checkpoint.embedder, model.checkpoint.preprocessing)
    payload = calibration_payload(
        embed,
        records,
        source=source,
        method=job.parameters.get("method", "logistic"),
    )
    with service.records.sessions.begin() as session:
        row = add_calibration(
            session, model_version_id=version_id, payload=payload, key_id=job.key_id
        )
        calibration_id = row.id
    job.log(f"model version {version_id}: calibration {calibration_id}")
    return {"model_version_id": version_id, "calibration_id": calibration_id}
