"""Model versions: a registered checkpoint (by sha256), at most one of them active. Switching the
active version is the model activation job's (app/jobs/activation.py): it re-embeds first."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit.entries import record_entry
from app.core.config import Settings
from app.evidence.calibrations import add_calibration
from app.storage.tables import ModelVersion, utcnow
from model.checkpoint import CheckpointError
from model.inference import EmbeddingModel


def active_version(session: Session) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.active))


def register(session: Session, model: EmbeddingModel, key_id: int | None) -> ModelVersion:
    """The version of this checkpoint, registered now unless it already was (same sha256), with
    the calibration the checkpoint carries, if any."""
    version = session.scalar(select(ModelVersion).where(ModelVersion.sha256 == model.sha256))
    if version is not None:
        return version
    # The calibration (with the pairs it was fitted on) is kept in its own table.
    calibration = model.checkpoint.info.get("calibration")
    info = {k: v for k, v in model.checkpoint.info.items() if k != "calibration"}
    version = ModelVersion(
        sha256=model.sha256,
        checkpoint_path=str(Path(model.path).resolve()),
        dimension=model.dimension,
        metrics=info.get("metrics", {}),
        info=info,
        active=False,
    )
    session.add(version)
    session.flush()
    record_entry(
        session,
        key_id=key_id,
        action="model.register",
        target_type="model_version",
        target_id=version.id,
        details={"sha256": model.sha256, "checkpoint": version.checkpoint_path},
    )
    if calibration is not None:
        add_calibration(session, model_version_id=version.id, payload=calibration, key_id=key_id)
    return version


def activate(session: Session, version: ModelVersion, key_id: int | None) -> None:
    """Make this the one active version, inside the caller's transaction."""
    previous = active_version(session)
    session.execute(update(ModelVersion).values(active=False))
    version.active = True
    version.activated_at = utcnow()
    record_entry(
        session,
        key_id=key_id,
        action="model.activate",
        target_type="model_version",
        target_id=version.id,
        details={
            "sha256": version.sha256,
            "previous_version": previous.id if previous is not None else None,
        },
    )


def load_model(version: ModelVersion, settings: Settings) -> EmbeddingModel:
    """The version's checkpoint on the configured device and precision, refused if the file
    changed since it was registered."""
    model = EmbeddingModel.load(
        Path(version.checkpoint_path), settings.device or None, settings.precision
    )
    if model.sha256 != version.sha256:
        raise CheckpointError(
            f"{version.checkpoint_path} is not the checkpoint registered as model version "
            f"{version.id} (sha256 {model.sha256[:12]}, registered {version.sha256[:12]})"
        )
    return model
