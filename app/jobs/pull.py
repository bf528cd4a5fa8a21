"""A DICOMweb pull as a job: one patient's radiographs from a registered server into the gallery
(app/dicom/pull.py), with its progress instance by instance and the report as the result."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.dicom.pull import pull_patient
from app.jobs.queue import RunningJob
from app.serving.service import Service


def pull_from_server(service: Service, job: RunningJob) -> dict[str, Any]:
    with _embedding(service) as loader:
        report = pull_patient(
            records=loader.records,
            matcher=loader.matcher,
            metrics=loader.metrics,
            server_name=job.parameters["server"],
            patient_id=job.parameters["patient_id"],
            key_id=job.key_id,
            progress=job.progress,
        )
    job.log(
        f"{report.stored} stored, {report.already_stored} already stored, "
        f"{len(report.refused)} refused of {report.instances} instances in "
        f"{report.studies} studies"
    )
    for refusal in report.refused:
        job.log(f"refused {refusal.sop_instance_uid} (0x{refusal.status:04X}): {refusal.reason}")
    return report.as_json()


@contextmanager
def _embedding(service: Service) -> Iterator[Service]:
    """A service that can embed: the worker's own inside `radmatch serve --worker`, else one with
    the active model and no index for the job's length, as `radmatch ingest` opens (the servers
    pick up what it commits)."""
    if service.matcher.serving is not None:
        yield service
        return
    loader = Service.open(service.settings, with_index=False)
    try:
        yield loader
    finally:
        loader.close()
