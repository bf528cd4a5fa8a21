"""One received DICOM object, the way every DICOM path takes it (app.dicom.intake.receive): what is
taken and what is refused with which status, who it belongs to, and that sending it again changes
nothing. In-process on a real database and original store; the paths' own tests send the same
objects with dcmtk and Orthanc."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import date
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian
from sqlalchemy import select

from app.core.config import Settings
from app.dicom.arrival import Arrival, Destination
from app.dicom.intake import receive
from app.dicom.objects import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    OUT_OF_RESOURCES,
    SOP_CLASS_NOT_SUPPORTED,
    Refused,
)
from app.serving.service import Service
from app.storage.database import upgrade
from app.storage.tables import AuditEntry, Case, Image, InboxItem, Person
from tests.support.images import ct_image, multiframe_dx, phantom_dicom, structured_report

GALLERY = Destination(issuer="HOSP")
BY_C_STORE = Arrival("c-store", "MORTUARY")


def knee(key: str, **study: object) -> bytes:
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    pixels = (rng.random((96, 96)) * 65535).astype(np.uint16)
    return phantom_dicom(pixels, key, **study)


def reencoded(data: bytes) -> bytes:
    """The same SOP instance in another transfer syntax, as a PACS may forward it."""
    ds = pydicom.dcmread(BytesIO(data))
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture
def settings(database_url: str, checkpoint: Path, tmp_path: Path) -> Settings:
    upgrade(database_url)
    return Settings(data_dir=tmp_path / "data", database_url=database_url, checkpoint=checkpoint)


@pytest.fixture
def service(settings: Settings) -> Iterator[Service]:
    opened = Service.open(settings, with_index=False)
    yield opened
    opened.close()


def take(service: Service, data: bytes, destination: Destination = GALLERY, **kwargs):
    return receive(
        records=service.records,
        matcher=service.matcher,
        metrics=service.metrics,
        data=data,
        destination=destination,
        arrival=kwargs.pop("arrival", BY_C_STORE),
        **kwargs,
    )


def refusal(service: Service, data: bytes, destination: Destination = GALLERY) -> Refused:
    with pytest.raises(Refused) as refused:
        take(service, data, destination)
    return refused.value


def new_case(service: Service, number: str) -> int:
    with service.records.sessions.begin() as session:
        case = Case(number=number)
        session.add(case)
        session.flush()
        return case.id


def decodes(service: Service) -> float:
    registry = service.metrics.registry
    return registry.get_sample_value("radmatch_decodes_total", {"outcome": "admitted"}) or 0.0


def test_a_radiograph_joins_the_person_its_patient_id_names(service: Service) -> None:
    before = decodes(service)
    first = take(service, knee("a1", person_id="P-7", acquired=date(2015, 3, 2), side="L"))
    second = take(service, knee("a2", person_id="P-7", acquired=date(2019, 6, 1), side="R"))
    assert first.stored and second.stored
    assert decodes(service) - before == 2  # each decoded once, the new person's first one too
    assert first.person_id == second.person_id
    with service.records.sessions() as session:
        person = session.get(Person, first.person_id)
        assert person.external_ref == "HOSP:P-7"
        assert person.sex == "F"  # the phantom writer's default patient
        images = session.scalars(select(Image).where(Image.person_id == person.id)).all()
        assert [(i.acquisition_date, i.side) for i in images] == [
            (date(2015, 3, 2), "L"),
            (date(2019, 6, 1), "R"),
        ]
        assert images[0].sop_instance_uid == first.sop_instance_uid
        upload = session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "image.upload", AuditEntry.target_id == first.image_id
            )
        )
        assert upload.details["via"] == "c-store"
        assert upload.details["sender"] == "MORTUARY"


def test_an_issuer_named_in_the_object_wins_over_the_destinations(service: Service) -> None:
    data = knee("issuer", person_id="P-8")
    ds = pydicom.dcmread(BytesIO(data))
    ds.IssuerOfPatientID = "CITYHOSP"
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    received = take(service, out.getvalue())
    with service.records.sessions() as session:
        assert session.get(Person, received.person_id).external_ref == "CITYHOSP:P-8"


def test_the_same_object_sent_again_or_re_encoded_is_the_image_already_stored(
    service: Service,
) -> None:
    data = knee("again", person_id="P-9")
    first = take(service, data)
    again = take(service, data)
    transcoded = take(service, reencoded(data))
    assert first.stored
    assert not again.stored and not transcoded.stored
    assert first.image_id == again.image_id == transcoded.image_id
    with service.records.sessions() as session:
        assert session.scalar(select(Image.id).where(Image.id > first.image_id)) is None


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (lambda: ct_image("ct"), SOP_CLASS_NOT_SUPPORTED, "CT Image Storage"),
        (lambda: structured_report("sr"), SOP_CLASS_NOT_SUPPORTED, "not a projection radiograph"),
        (lambda: multiframe_dx("mf", frames=3), DATASET_DOES_NOT_MATCH, "3 frames"),
        (lambda: b"not dicom at all" * 20, CANNOT_UNDERSTAND, "not a readable DICOM object"),
    ],
)
def test_what_is_not_one_radiograph_is_refused_with_its_status_and_reason(
    service: Service, make, status: int, words: str
) -> None:
    refused = refusal(service, make())
    assert refused.status == status
    assert words in refused.reason
    with service.records.sessions() as session:
        assert session.scalar(select(Image.id)) is None
        assert session.scalar(select(Person.id)) is None
    assert not any(service.records.originals.root.rglob("*.dcm"))


def test_the_gallery_refuses_an_object_without_a_patient_id(service: Service) -> None:
    ds = pydicom.dcmread(BytesIO(knee("anonymous")))
    del ds.PatientID
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    refused = refusal(service, out.getvalue())
    assert refused.status == DATASET_DOES_NOT_MATCH
    assert "no PatientID" in refused.reason


def test_a_case_inbox_keeps_the_radiograph_once_with_its_arrival(service: Service) -> None:
    case_id = new_case(service, "PM-2026-1")
    data = knee("post-mortem", person_id="UNKNOWN")
    inbox = Destination(case_id=case_id)
    first = take(service, data, inbox)
    again = take(service, reencoded(data), inbox)
    assert first.stored and not again.stored
    assert first.inbox_item_id == again.inbox_item_id
    with service.records.sessions() as session:
        item = session.get(InboxItem, first.inbox_item_id)
        assert (item.case_id, item.received_via, item.sender) == (case_id, "c-store", "MORTUARY")
        assert session.scalar(select(Person.id)) is None  # the unknown person joins no gallery
    assert service.records.originals.read(item.sha256) == data
    # An inbox item's original counts as needed: settling interrupted writes keeps it.
    assert service.records.original_needed(item.sha256)


def test_without_an_active_model_a_radiograph_is_refused_as_out_of_resources(
    settings: Settings,
) -> None:
    service = Service.open(settings, with_index=False, with_model=False)
    try:
        refused = refusal(service, knee("no-model", person_id="P-10"))
    finally:
        service.close()
    assert refused.status == OUT_OF_RESOURCES
    assert "no model is active" in refused.reason


def test_a_first_radiograph_that_does_not_decode_leaves_no_person_behind(
    service: Service,
) -> None:
    truncated = knee("cut", person_id="P-11")[:-4000]
    refused = refusal(service, truncated)
    assert refused.status == CANNOT_UNDERSTAND
    with service.records.sessions() as session:
        assert session.scalar(select(Person.id)) is None
