"""A model version's calibrations: stored when the version is registered with one (from its
checkpoint) or refitted by an admin job, never changed afterwards. The newest is the version's
current calibration; a search records the one it used, so that its evidence can be recomputed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from app.audit.entries import record_entry
from app.core.errors import NotFound
from app.storage.tables import ModelCalibration, utcnow
from training.calibration.calibration import Calibration


@dataclass(frozen=True)
class StoredCalibration:
    id: int
    model_version_id: int
    method: str
    calibration: Calibration

    @property
    def ref(self) -> dict[str, Any]:
        return {"id": self.id, "method": self.method, "model_version_id": self.model_version_id}


def current_calibration(session: Session, model_version_id: int) -> StoredCalibration | None:
    """The version's newest calibration, in one query (every search asks)."""
    return _stored(session, ModelCalibration.id == _newest_id_query(model_version_id))


def calibration_by_id(session: Session, calibration_id: int) -> StoredCalibration:
    stored = _stored(session, ModelCalibration.id == calibration_id)
    if stored is None:
        raise NotFound(f"no calibration with id {calibration_id}")
    return stored


def _newest_id_query(model_version_id: int):
    return (
        select(ModelCalibration.id)
        .where(ModelCalibration.model_version_id == model_version_id)
        .order_by(ModelCalibration.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _stored(session: Session, condition) -> StoredCalibration | None:
    """The calibration fitted, without its pairs (large, and needed only by the admin's plots)."""
    row = session.execute(
        select(
            ModelCalibration.id,
            ModelCalibration.model_version_id,
            ModelCalibration.method,
            ModelCalibration.fit,
        ).where(condition)
    ).one_or_none()
    if row is None:
        return None
    return StoredCalibration(
        row.id, row.model_version_id, row.method, Calibration.from_json(row.fit)
    )


def add_calibration(
    session: Session,
    *,
    model_version_id: int,
    payload: dict[str, Any],
    key_id: int | None,
    by: dict[str, str] | None = None,
) -> ModelCalibration:
    """Store a calibration payload (training.calibration.fitting's) as the version's newest."""
    fit = payload["calibration"]
    row = ModelCalibration(
        model_version_id=model_version_id,
        method=fit["method"],
        source=payload["source"],
        fit=fit,
        pairs=payload["pairs"],
        validation=payload["validation"],
        created_at=utcnow(),
        created_by_key_id=key_id,
    )
    session.add(row)
    session.flush()
    record_entry(
        session,
        key_id=key_id,
        action="model.calibrate",
        target_type="model_version",
        target_id=model_version_id,
        details={"calibration_id": row.id, "method": row.method, "source": row.source},
        by=by,
    )
    return row


def newest_row(session: Session, model_version_id: int) -> ModelCalibration | None:
    """The current calibration's row; its pairs (large) load only when read."""
    return session.scalar(
        select(ModelCalibration)
        .options(defer(ModelCalibration.pairs))
        .where(ModelCalibration.id == _newest_id_query(model_version_id))
    )


def shown_source(source: dict[str, Any]) -> dict[str, Any]:
    """What a calibration was fitted on, as answers show it: a manifest by its file name and
    sha256, never by the server's path."""
    manifest = source.get("manifest")
    return source | {"manifest": None if manifest is None else PurePath(manifest).name}


def summary(row: ModelCalibration) -> dict[str, Any]:
    """The calibration as the admin view shows it: what it was fitted on, and each curve's
    bounds and pair counts."""
    fitted = Calibration.from_json(row.fit)
    return {
        "id": row.id,
        "method": row.method,
        "created_at": row.created_at,
        "source": shown_source(row.source),
        "curves": [
            {
                "label": curve.label,
                "years": None if curve.years is None else list(curve.years),
                "elub": [float(bound) for bound in curve.elub],
                "same_pairs": curve.same_pairs,
                "different_pairs": curve.different_pairs,
            }
            for curve in (fitted.pooled, *fitted.bands)
        ],
    }
