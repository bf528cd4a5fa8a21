"""A model version's calibration (similarity to likelihood ratio) and its validation report, for
the admin view; refitting it on a new manifest is a job."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Response
from fastapi import Path as PathParameter
from sqlalchemy import select

from app.api import API_PREFIX
from app.api.admin import is_file
from app.api.deps import AdminKey, PathId, ServiceDep
from app.api.schemas.admin import CalibrationCreate, JobOut, ValidationOut
from app.api.schemas.common import refusals
from app.core.errors import NotFound, Unprocessable
from app.evidence.calibrations import newest_row, summary
from app.jobs.queue import enqueue
from app.storage.tables import Job, ModelCalibration, ModelVersion
from training.calibration.pairs import Pairs

router = APIRouter(prefix=f"{API_PREFIX}/admin", tags=["admin"], responses=refusals(401, 403, 503))

Plot = Literal["tippett", "ece", "pav", "scores"]
PLOTS: tuple[str, ...] = Plot.__args__


@router.post(
    "/models/{version_id}/calibrations",
    status_code=202,
    response_model=JobOut,
    responses=refusals(400, 404, 422),
)
def refit_calibration(
    version_id: PathId, body: CalibrationCreate, service: ServiceDep, key: AdminKey
) -> Job:
    """Fit the version's calibration anew on a manifest's people: the result becomes its current
    calibration; searches stored earlier keep the one they recorded."""
    if not is_file(body.manifest):
        raise Unprocessable(f"no manifest file at {body.manifest!r} on the server")
    with service.records.sessions.begin() as session:
        _version(session, version_id)
        parameters = {"model_version_id": version_id, "manifest": body.manifest}
        return enqueue(session, "calibration", parameters | {"method": body.method}, key.id)


@router.get(
    "/models/{version_id}/validation", response_model=ValidationOut, responses=refusals(404)
)
def get_validation(version_id: PathId, service: ServiceDep, _: AdminKey) -> dict:
    """The current calibration's validation report, cross-validated over people."""
    with service.records.sessions() as session:
        row = _calibration(session, version_id)
        return {
            "model_version_id": version_id,
            "calibration": summary(row),
            "report": row.validation,
            "plots": {
                name: f"{API_PREFIX}/admin/models/{version_id}/validation/{name}.png"
                for name in PLOTS
            },
        }


@router.get(
    "/models/{version_id}/validation/{plot}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **refusals(404)},
)
def get_validation_plot(
    version_id: PathId,
    plot: Annotated[Plot, PathParameter(description="tippett, ece, pav or scores")],
    service: ServiceDep,
    _: AdminKey,
) -> Response:
    """One plot of the report, drawn from the calibration's pairs and their cross-validated
    likelihood ratios."""
    # Fitting (scikit-learn) and drawing (matplotlib) load only when a plot is asked for: every
    # server process would otherwise pay for importing them at start.
    from training.calibration.plots import write_plots
    from training.calibration.validation import cross_validated

    with service.records.sessions() as session:
        row = _calibration(session, version_id)
        stored_pairs = session.scalar(
            select(ModelCalibration.pairs).where(ModelCalibration.id == row.id)
        )
        method = row.method
    pairs = Pairs.from_json(stored_pairs)
    log10_lrs, assessed = cross_validated(pairs, method)
    held_out = pairs.subset(assessed)
    with tempfile.TemporaryDirectory() as folder:
        files = write_plots(Path(folder), log10_lrs[assessed], held_out.same, held_out.similarity)
        data = files[plot].read_bytes()
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


def _version(session, version_id: int) -> ModelVersion:
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise NotFound(f"no model version with id {version_id}")
    return version


def _calibration(session, version_id: int) -> ModelCalibration:
    _version(session, version_id)
    row = newest_row(session, version_id)
    if row is None:
        raise NotFound(
            f"model version {version_id} has no calibration: fit one with POST "
            f"{API_PREFIX}/admin/models/{version_id}/calibrations"
        )
    return row
