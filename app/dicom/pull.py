"""Pulling one person's radiographs from a registered DICOMweb server (a hospital's PACS) into the
gallery, as their ante-mortem images: QIDO-RS finds the patient's studies (PatientID matched
exactly) and each study's instances, WADO-RS retrieves every instance that could be a radiograph,
and each goes through the one intake under the server's issuer.

Instances are chosen by their SOP Class UID, as the QIDO-RS answer gives it, rather than by the
series' Modality: the SOP class is what the intake decides on (a scanned film is secondary capture
whatever its series says, and "OT" names anything), and a CT or MR series of hundreds of slices is
reported refused without a byte of it fetched. An instance whose class the answer leaves out is
fetched and left to the intake.

A pull can be repeated: instances already in the gallery for this patient are not fetched again,
and the intake recognises any it is sent twice, so a second pull stores nothing new and a pull
that stopped part-way picks up where it stopped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from sqlalchemy import select

from app.audit.entries import record_entry
from app.core.errors import ClientError
from app.core.metrics import Metrics
from app.dicom.arrival import Arrival, Destination
from app.dicom.intake import receive
from app.dicom.objects import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    DicomObject,
    Refused,
    read_object,
)
from app.dicom.servers import check_patient_id, server_named
from app.serving.matcher import Matcher
from app.storage.records import Records
from app.storage.tables import DicomWebServer, Image, Person

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0

Progress = Callable[[int, int | None, str], None]


class RemoteError(ClientError):
    """The DICOMweb server could not be reached, or answered with an error: nothing more was
    pulled, and what was stored before stays."""

    status = 502


@dataclass(frozen=True)
class PullRefusal:
    sop_instance_uid: str
    status: int
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "status": self.status,
            "reason": self.reason,
        }


@dataclass
class PullReport:
    server: str
    patient_id: str
    studies: int = 0
    instances: int = 0
    stored: int = 0
    already_stored: int = 0
    person_ids: set[int] = field(default_factory=set)
    refused: list[PullRefusal] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "patient_id": self.patient_id,
            "studies": self.studies,
            "instances": self.instances,
            "stored": self.stored,
            "already_stored": self.already_stored,
            "person_ids": sorted(self.person_ids),
            "refused": [refusal.as_json() for refusal in self.refused],
        }


@dataclass(frozen=True)
class Listed:
    """An instance as the QIDO-RS answer names it."""

    study: str
    series: str
    sop_instance_uid: str
    sop_class_uid: str | None
    modality: str | None


def pull_patient(
    *,
    records: Records,
    matcher: Matcher,
    metrics: Metrics,
    server_name: str,
    patient_id: str,
    key_id: int | None,
    by: dict[str, str] | None = None,
    progress: Progress = lambda done, total, message: None,
) -> PullReport:
    """Pull every radiograph of the server's patient `patient_id` into the gallery; RemoteError
    when the server fails us, NotFound for a server not registered. `by`: who, from the command
    line."""
    patient_id = check_patient_id(patient_id)
    with records.sessions() as session:
        server = server_named(session, server_name)
        session.expunge(server)
    remote = Remote(server)
    report = PullReport(server.name, patient_id)
    progress(0, None, f"searching {server.name} for PatientID {patient_id}")
    listed = remote.instances_of(patient_id, report)
    have = _pulled_before(records, f"{server.issuer}:{patient_id}")
    destination = Destination(issuer=server.issuer)
    arrival = Arrival("dicomweb-pull", server.name, key_id, by)
    for done, instance in enumerate(listed):
        progress(done, len(listed), f"instance {instance.sop_instance_uid}")
        if instance.sop_instance_uid in have:
            report.already_stored += 1
            report.person_ids.add(have[instance.sop_instance_uid])
            continue
        try:
            _not_a_radiograph(instance)
            data = remote.retrieve(instance)
            _check_patient(read_object(data), patient_id)
            received = receive(
                records=records,
                matcher=matcher,
                metrics=metrics,
                data=data,
                destination=destination,
                arrival=arrival,
            )
        except Refused as refused:
            report.refused.append(
                PullRefusal(instance.sop_instance_uid, refused.status, refused.reason)
            )
            continue
        if received.stored:
            report.stored += 1
        else:
            report.already_stored += 1
        report.person_ids.add(received.person_id)
    progress(len(listed), len(listed), "done")
    _audit(records, server, report, arrival)
    return report


def _not_a_radiograph(instance: Listed) -> None:
    """Refused, without fetching it, when its SOP class is not one the intake takes."""
    if instance.sop_class_uid is not None:
        DicomObject(
            sop_class_uid=instance.sop_class_uid,
            sop_instance_uid=instance.sop_instance_uid,
            study_instance_uid=instance.study,
            modality=instance.modality,
            patient_id=None,
            issuer_of_patient_id=None,
            patient_sex=None,
            birth_year=None,
            frames=1,
        ).check_radiograph()


def _check_patient(found: DicomObject, patient_id: str) -> None:
    if found.patient_id != patient_id:
        raise Refused(
            DATASET_DOES_NOT_MATCH,
            f"{found.kind} {found.sop_instance_uid} is of PatientID "
            f"{found.patient_id or '(none given)'}, not {patient_id}: the server answered for "
            "another patient, so it was not taken",
        )


def _pulled_before(records: Records, person_ref: str) -> dict[str, int]:
    """The SOP instances the gallery holds for this person already, with the person's id."""
    with records.sessions() as session:
        rows = session.execute(
            select(Image.sop_instance_uid, Image.person_id)
            .join(Person, Person.id == Image.person_id)
            .where(
                Person.external_ref == person_ref,
                Image.deleted_at.is_(None),
                Image.sop_instance_uid.is_not(None),
            )
        )
        return {sop_instance_uid: person_id for sop_instance_uid, person_id in rows}


def _audit(records: Records, server: DicomWebServer, report: PullReport, arrival: Arrival) -> None:
    summary = report.as_json()
    summary["refused"] = len(report.refused)
    with records.sessions.begin() as session:
        record_entry(
            session,
            action="dicomweb.pull",
            target_type="dicomweb_server",
            target_id=server.id,
            details=summary,
            key_id=arrival.key_id,
            by=arrival.by,
        )


class Remote:
    """A registered server, spoken to with dicomweb-client; every failure a RemoteError that
    names the server and what it answered."""

    def __init__(self, server: DicomWebServer):
        self.name, self.url = server.name, server.base_url
        session = requests.Session()
        headers: dict[str, str] = {}
        auth = server.auth
        if auth["type"] == "basic":
            session.auth = (auth["username"], auth["password"])
        elif auth["type"] == "bearer":
            headers["Authorization"] = f"Bearer {auth['token']}"
        elif auth["type"] == "header":
            headers[auth["name"]] = auth["value"]
        self.client = DICOMwebClient(
            self.url,
            session=session,
            headers=headers,
            timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
        )
        # A failed pull is repeated by whoever started it, and picks up where it stopped.
        self.client.set_http_retry_params(retry=False)

    def instances_of(self, patient_id: str, report: PullReport) -> list[Listed]:
        studies = self._ask(
            f"the study search for PatientID {patient_id}",
            lambda: self.client.search_for_studies(
                search_filters={"PatientID": patient_id},
                fuzzymatching=False,
                get_remaining=True,
            ),
        )
        study_uids = sorted({_value(study, "0020000D") for study in studies} - {None})
        report.studies = len(study_uids)
        listed = []
        for study in study_uids:
            instances = self._ask(
                f"the instance search of study {study}",
                lambda study=study: self.client.search_for_instances(
                    study_instance_uid=study, get_remaining=True
                ),
            )
            for instance in instances:
                series, sop = _value(instance, "0020000E"), _value(instance, "00080018")
                if series and sop:
                    sop_class, modality = _value(instance, "00080016"), _value(instance, "00080060")
                    listed.append(Listed(study, series, sop, sop_class, modality))
        report.instances = len(listed)
        return listed

    def retrieve(self, instance: Listed) -> bytes:
        """The instance as a DICOM file, in the transfer syntax the server sent it in."""
        what = f"retrieving instance {instance.sop_instance_uid}"
        try:
            dataset = self._ask(
                what,
                lambda: self.client.retrieve_instance(
                    instance.study, instance.series, instance.sop_instance_uid
                ),
            )
            return _file_bytes(dataset)
        # A part that is no DICOM file, or a file without its meta information: that instance
        # is refused, and the pull goes on with the next.
        except (InvalidDicomError, ValueError, AttributeError, KeyError) as error:
            raise Refused(
                CANNOT_UNDERSTAND, f"{self.name} sent something that is not a DICOM file: {error}"
            ) from None

    def _ask(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except requests.HTTPError as error:
            response = error.response
            status = f"{response.status_code} {response.reason}" if response is not None else ""
            raise RemoteError(
                f"DICOMweb server {self.name!r} ({self.url}) answered {status} to {what}"
            ) from None
        except requests.JSONDecodeError as error:
            raise RemoteError(
                f"DICOMweb server {self.name!r} ({self.url}) answered {what} with something that "
                f"is not DICOM JSON: {error}"
            ) from None
        except requests.RequestException as error:
            raise RemoteError(
                f"cannot reach DICOMweb server {self.name!r} at {self.url} for {what}: "
                f"{type(error).__name__}: {error}"
            ) from None


def _file_bytes(dataset: Dataset) -> bytes:
    out = BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _value(attributes: dict[str, Any], tag: str) -> str | None:
    """A single value from a DICOM JSON dataset (PS3.18 F.2)."""
    values = attributes.get(tag, {}).get("Value") or [None]
    return str(values[0]) if values[0] is not None else None
