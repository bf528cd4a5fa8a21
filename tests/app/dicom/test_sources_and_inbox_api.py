"""The admin's register of DICOM senders, and a case's inbox over the API: listing what arrived,
its original and preview, and searching with it. Radiographs reach the inbox here the way the
receiver process delivers them (app.dicom.intake.receive on the same database and store)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.core.config import Settings
from app.dicom.arrival import Arrival, Destination
from app.dicom.intake import receive
from app.serving.service import Service
from tests.support.images import phantom_dicom
from tests.support.servers import Server

API = "/api/v1"
SOURCES = f"{API}/admin/dicom/sources"


def knee(key: str, **study: object) -> bytes:
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return phantom_dicom((rng.random((96, 96)) * 65535).astype(np.uint16), key, **study)


@pytest.fixture(scope="module")
def beside_server(shared_server: Server, checkpoint: Path) -> Iterator[Service]:
    """The service opened in this process on the server's database and files, as the C-STORE
    receiver opens it in its own."""
    settings = Settings(
        data_dir=Path(shared_server.env["RADMATCH_DATA_DIR"]),
        database_url=shared_server.env["RADMATCH_DATABASE_URL"],
        checkpoint=checkpoint,
    )
    service = Service.open(settings, with_index=False)
    yield service
    service.close()


def new_case(server: Server, number: str) -> int:
    with server.examiner() as client:
        response = client.post(f"{API}/cases", json={"number": number})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_an_admin_registers_lists_and_revokes_senders(shared_server: Server) -> None:
    case_id = new_case(shared_server, "sources-1")
    with shared_server.admin() as admin:
        mortuary = admin.post(SOURCES, json={"ae_title": " MORTUARY1 ", "case_id": case_id})
        hospital = admin.post(SOURCES, json={"ae_title": "CITYPACS", "issuer": "CITY"})
        assert mortuary.status_code == hospital.status_code == 201, mortuary.text
        assert mortuary.json()["ae_title"] == "MORTUARY1"  # DICOM ignores the padding
        listed = {s["ae_title"]: s for s in admin.get(SOURCES).json()}
        assert listed["MORTUARY1"]["case_id"] == case_id
        assert listed["CITYPACS"]["issuer"] == "CITY"

        again = admin.post(SOURCES, json={"ae_title": "CITYPACS", "issuer": "OTHER"})
        assert again.status_code == 409
        assert "registered already" in again.json()["detail"]

        revoked = admin.delete(f"{SOURCES}/{hospital.json()['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        assert "CITYPACS" not in {s["ae_title"] for s in admin.get(SOURCES).json()}
        assert admin.delete(f"{SOURCES}/{hospital.json()['id']}").status_code == 404
        # Revoked, the title can be registered again, sending elsewhere.
        moved = admin.post(SOURCES, json={"ae_title": "CITYPACS", "issuer": "OTHER"})
        assert moved.status_code == 201


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"ae_title": "A\\B", "issuer": "X"}, "backslash"),
        ({"ae_title": "   ", "issuer": "X"}, "other than a space"),
        ({"ae_title": "SEVENTEEN-LETTERS", "issuer": "X"}, "at most 16"),
        ({"ae_title": "BOTH", "issuer": "X", "case_id": 1}, "exactly one"),
        ({"ae_title": "NEITHER"}, "exactly one"),
    ],
)
def test_a_sender_registration_that_cannot_work_is_refused(
    shared_server: Server, body: dict, words: str
) -> None:
    with shared_server.admin() as admin:
        response = admin.post(SOURCES, json=body)
    assert response.status_code == 422
    assert words in response.text


def test_only_admins_manage_senders(shared_server: Server) -> None:
    with shared_server.examiner() as examiner:
        assert examiner.get(SOURCES).status_code == 403
        response = examiner.post(SOURCES, json={"ae_title": "X", "issuer": "Y"})
        assert response.status_code == 403
    with shared_server.admin() as admin:
        unknown_case = admin.post(SOURCES, json={"ae_title": "NOCASE", "case_id": 2**31 - 1})
        assert unknown_case.status_code == 404


def test_an_examiner_searches_with_a_radiograph_from_the_inbox(
    shared_server: Server, beside_server: Service
) -> None:
    person = knee("inbox-known", person_id="K-1")
    gallery = receive(
        records=beside_server.records,
        matcher=beside_server.matcher,
        metrics=beside_server.metrics,
        data=person,
        destination=Destination(issuer="HOSP"),
        arrival=Arrival("c-store", "CITYPACS"),
    )
    case_id = new_case(shared_server, "inbox-1")
    item = receive(
        records=beside_server.records,
        matcher=beside_server.matcher,
        metrics=beside_server.metrics,
        data=person,  # the same radiograph: its person must come first
        destination=Destination(case_id=case_id),
        arrival=Arrival("c-store", "MORTUARY1"),
    )
    with shared_server.examiner() as client:
        listed = client.get(f"{API}/cases/{case_id}/inbox").json()
        assert [i["id"] for i in listed] == [item.inbox_item_id]
        assert listed[0]["received_via"] == "c-store" and listed[0]["sender"] == "MORTUARY1"
        item_url = f"{API}/cases/{case_id}/inbox/{item.inbox_item_id}"
        assert client.get(f"{item_url}/original").content == person
        preview = client.get(f"{item_url}/preview.png", params={"size": 64})
        assert preview.headers["content-type"] == "image/png"
        answer = wait_for_searchable(client, f"{item_url}/searches", gallery.person_id)
        assert answer["case_id"] == case_id
        assert client.get(f"{API}/cases/{case_id}/inbox/999999/original").status_code == 404
        other_case = new_case(shared_server, "inbox-2")
        elsewhere = f"{API}/cases/{other_case}/inbox/{item.inbox_item_id}/original"
        assert client.get(elsewhere).status_code == 404


def wait_for_searchable(client, url: str, person_id: int) -> dict:
    """The search's answer once the server's index has caught up with the image added beside it."""

    deadline = time.monotonic() + 30
    while True:
        response = client.post(url, data={"k": 3})
        assert response.status_code == 200, response.text
        answer = response.json()
        if answer["candidates"] and answer["candidates"][0]["person_id"] == person_id:
            return answer
        assert time.monotonic() < deadline, f"person {person_id} never came first: {answer}"
        time.sleep(0.5)
