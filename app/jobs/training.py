"""Retraining: train an embedder on the people in the case database (or on a cohort manifest the
worker can read), then register the best checkpoint as a new model version with its validation
metrics. It is not activated: an admin compares versions and activates one.

The run folder is DATA_DIR/models/job-<id>; a job re-queued after its worker died resumes from the
epoch it had reached."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.core.errors import Unprocessable
from app.jobs.queue import RunningJob
from app.serving.model_versions import register
from app.serving.service import Service
from app.storage.tables import Image, Person
from model.inference import EmbeddingModel
from training.config import ConfigError, check_options, resolve_config
from training.records import ImageRecord
from training.train import train, train_on_records


def check_training_options(preset: str, overrides: dict[str, Any]) -> None:
    """Refuse, before a job is queued, a preset or options that training would refuse."""
    try:
        resolve_config(preset, None, check_options(overrides, "overrides"))
    except (ConfigError, TypeError) as error:
        raise Unprocessable(str(error)) from None


def train_model(service: Service, job: RunningJob) -> dict[str, Any]:
    config = resolve_config(job.parameters["preset"], None, job.parameters.get("overrides", {}))
    out = service.settings.data_dir / "models" / f"job-{job.id}"
    manifest = job.parameters.get("manifest")

    def on_step(epoch: int, step: int, steps: int) -> None:
        done = epoch * steps + step
        job.progress(done, config.epochs * steps, f"epoch {epoch + 1}/{config.epochs}")

    resuming = (out / "last.pt").exists()  # an earlier attempt's worker died
    job.log(f"{'resuming' if resuming else 'training'} preset {job.parameters['preset']} in {out}")
    if manifest:
        checkpoint = train(config, Path(manifest), out, progress=False, on_step=on_step)
    else:
        records, cohort_sha256 = case_database_records(service)
        job.log(f"{len({r.person_id for r in records})} people, {len(records)} images")
        checkpoint = train_on_records(
            config, records, cohort_sha256, out, progress=False, on_step=on_step
        )
    model = EmbeddingModel.load(checkpoint, "cpu")
    with service.records.sessions.begin() as session:
        version = register(session, model, job.key_id)
    job.log(f"registered model version {version.id}")
    return {
        "model_version_id": version.id,
        "checkpoint": str(checkpoint),
        "metrics": version.metrics,
    }


def case_database_records(service: Service) -> tuple[list[ImageRecord], str]:
    """Every live image of a live person as a training record (the stored original is the file),
    and a sha256 naming this data set. People are the identities; training holds a share of
    them out for validation, so the split is by person."""
    with service.records.sessions() as session:
        rows = session.execute(
            select(Image, Person.sex)
            .join(Person)
            .where(Image.deleted_at.is_(None), Person.deleted_at.is_(None))
            .order_by(Image.person_id, Image.id)
        ).all()
    records = [
        ImageRecord(
            person_id=str(image.person_id),
            visit_months=image.visit_months or 0.0,
            path=service.records.originals.path(image.sha256),
            body_part=image.body_part or "UNKNOWN",
            side=image.side,
            sex=sex,
            pixel_spacing_mm=image.pixel_spacing_mm,
        )
        for image, sex in rows
    ]
    digest = hashlib.sha256()
    for record in records:
        digest.update(f"{record.person_id} {record.path.name}\n".encode())
    return records, digest.hexdigest()
