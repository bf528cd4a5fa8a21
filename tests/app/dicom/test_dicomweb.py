"""DICOMweb against real peers: STOW-RS into a real radmatch server (from httpx with bodies written
here, and from Orthanc), pulls from Orthanc as a hospital's PACS by the `radmatch pull` command
and by the admin API's job, and a server killed while STOW-RS requests stream in."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from app.dicom.stow import body_limit
from app.storage.database import make_engine, session_factory
from app.storage.tables import AuditEntry, Embedding, Image, Person
from tests.support.dicom_peers import Orthanc
from tests.support.images import ct_image, phantom_dicom, saved, structured_report
from tests.support.servers import REPO, Server, WorkerProcess, free_port, load_bench, new_server

API = "/api/v1"
BOUNDARY = "radmatch-test-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
KNEE = (np.arange(96 * 96, dtype=np.uint32).reshape(96, 96) * 7 % 65536).astype(np.uint16)
REFERENCED, FAILED, RETRIEVE_URL = "00081199", "00081198", "00081190"
SOP_CLASS, SOP_INSTANCE, FAILURE_REASON = "00081150", "00081155", "00081197"
REASON_TEXT = "00091001"  # radmatch's private reason in words, creator "RADMATCH" at (0009,0010)
SOP_CLASS_NOT_SUPPORTED, DATASET_DOES_NOT_MATCH, CANNOT_UNDERSTAND = 0x0122, 0xA900, 0xC000


def radiograph(key: str, person: str, **study: object) -> bytes:
    """A DX knee of `person`, its UIDs made from `key`, with pixels of its own."""
    shift = int(hashlib.sha256(key.encode()).hexdigest()[:4], 16)
    return phantom_dicom((KNEE + shift).astype(np.uint16), key, person_id=person, **study)


def uids(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(BytesIO(data), stop_before_pixels=True)


def multipart(*parts: bytes | tuple[str, bytes]) -> bytes:
    """A STOW-RS body: each part application/dicom unless given as (content type, bytes)."""
    out = b"preamble, which a reader ignores\r\n"
    for part in parts:
        content_type, data = part if isinstance(part, tuple) else ("application/dicom", part)
        out += f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def stow(server: Server, path: str, *parts, key: str | None = None, **headers) -> httpx.Response:
    with server.client(key if key is not None else server.examiner_key) as client:
        return client.post(
            f"/dicomweb{path}",
            content=multipart(*parts),
            headers={"Content-Type": STOW_TYPE, **headers},
        )


def items(answer: httpx.Response, sequence: str) -> list[dict]:
    assert answer.headers["content-type"] == "application/dicom+json"
    return answer.json().get(sequence, {}).get("Value", [])


def value(item: dict, tag: str):
    return (item.get(tag, {}).get("Value") or [None])[0]


def sop_uids(found: dict) -> list[str]:
    """A person's images' SOP Instance UIDs, sorted."""
    return sorted(image["image_metadata"]["sop_instance_uid"] for image in found["images"])


def person(server: Server, ref: str) -> dict | None:
    """The gallery person with this external reference and their images, or None."""
    with server.examiner() as client:
        found = client.get(f"{API}/people", params={"external_ref": ref}).json()["items"]
        if not found:
            return None
        return client.get(f"{API}/people/{found[0]['id']}").json()


def row_counts(server: Server) -> dict[str, int]:
    """How many rows each table holds that a received object adds to."""
    engine = make_engine(server.env["RADMATCH_DATABASE_URL"])
    try:
        with session_factory(engine)() as session:
            return {
                table.__tablename__: session.scalar(select(sa.func.count()).select_from(table))
                for table in (Person, Image, Embedding, AuditEntry)
            }
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def tag(module_database_url) -> str:
    """Tells this database's run from the other's where both reach one Orthanc."""
    return sa.make_url(module_database_url).get_backend_name()


# --- STOW-RS ---------------------------------------------------------------------------------


def test_stow_stores_instances_once_and_answers_where_they_are(shared_server, tag) -> None:
    first, second = (radiograph(f"stow-{tag}-{n}", f"stow-{tag}") for n in (1, 2))

    answer = stow(shared_server, "/studies", first, second)
    before = row_counts(shared_server)
    again = stow(shared_server, "/studies", first, second)

    assert answer.status_code == 200, answer.text
    referenced = items(answer, REFERENCED)
    assert [value(item, SOP_INSTANCE) for item in referenced] == [
        uids(first).SOPInstanceUID,
        uids(second).SOPInstanceUID,
    ]
    assert {value(item, SOP_CLASS) for item in referenced} == {uids(first).SOPClassUID}
    assert FAILED not in answer.json()
    with shared_server.examiner() as client:
        for item, sent in zip(referenced, (first, second), strict=True):
            assert client.get(value(item, RETRIEVE_URL)).content == sent
    stored = person(shared_server, f"LOCAL:stow-{tag}")
    assert sop_uids(stored) == sorted(uids(data).SOPInstanceUID for data in (first, second))
    assert again.status_code == 200, again.text
    assert items(again, REFERENCED) == referenced
    assert row_counts(shared_server) == before


def test_stow_answers_202_with_each_failure_and_its_reason(shared_server, tag) -> None:
    knee, ct = radiograph(f"mixed-{tag}", f"mixed-{tag}"), ct_image(f"mixed-{tag}")

    answer = stow(shared_server, "/studies", knee, ct, b"these bytes are no DICOM object")

    assert answer.status_code == 202, answer.text
    assert [value(item, SOP_INSTANCE) for item in items(answer, REFERENCED)] == [
        uids(knee).SOPInstanceUID
    ]
    failed = items(answer, FAILED)
    assert [value(item, FAILURE_REASON) for item in failed] == [
        SOP_CLASS_NOT_SUPPORTED,
        CANNOT_UNDERSTAND,
    ]
    assert value(failed[0], SOP_INSTANCE) == uids(ct).SOPInstanceUID
    assert value(failed[0], SOP_CLASS) == uids(ct).SOPClassUID
    assert value(failed[1], SOP_INSTANCE) is None  # not DICOM: no instance to name
    assert all(value(item, "00090010") == "RADMATCH" for item in failed)
    assert "CT Image Storage" in value(failed[0], REASON_TEXT)
    assert "part 3: not a readable DICOM object" in value(failed[1], REASON_TEXT)
    assert len(person(shared_server, f"LOCAL:mixed-{tag}")["images"]) == 1


def test_stow_answers_409_when_nothing_is_stored(shared_server, tag) -> None:
    answer = stow(
        shared_server,
        "/studies",
        ct_image(f"none-{tag}"),
        structured_report(f"none-{tag}"),
        ("application/pdf", b"%PDF-1.4"),
    )

    assert answer.status_code == 409, answer.text
    assert REFERENCED not in answer.json()
    assert [value(item, FAILURE_REASON) for item in items(answer, FAILED)] == [
        SOP_CLASS_NOT_SUPPORTED,
        SOP_CLASS_NOT_SUPPORTED,
        CANNOT_UNDERSTAND,
    ]
    assert "part 3 is application/pdf" in value(items(answer, FAILED)[2], REASON_TEXT)
    assert person(shared_server, f"LOCAL:none-{tag}") is None


def test_stow_refuses_what_it_cannot_take_with_a_reason(shared_server, tag) -> None:
    knee = radiograph(f"refused-{tag}", f"refused-{tag}")
    with shared_server.examiner() as client:
        bare = client.post(
            "/dicomweb/studies", content=knee, headers={"Content-Type": "application/dicom"}
        )
        metadata = client.post(
            "/dicomweb/studies",
            content=multipart(knee),
            headers={
                "Content-Type": STOW_TYPE.replace("application/dicom", "application/dicom+json")
            },
        )
        no_boundary = client.post(
            "/dicomweb/studies", content=knee, headers={"Content-Type": "multipart/related"}
        )
        cut_off = client.post(
            "/dicomweb/studies", content=multipart(knee)[:-40], headers={"Content-Type": STOW_TYPE}
        )
    without_key = stow(shared_server, "/studies", knee, key="")
    wrong_key = stow(shared_server, "/studies", knee, key="not a key")

    assert bare.status_code == 415
    assert "multipart/related" in bare.json()["detail"]
    assert metadata.status_code == 415
    assert "application/dicom+json" in metadata.json()["detail"]
    assert no_boundary.status_code == 400
    assert "boundary" in no_boundary.json()["detail"]
    assert cut_off.status_code == 400
    assert "closing boundary" in cut_off.json()["detail"]
    assert (without_key.status_code, wrong_key.status_code) == (401, 401)
    assert person(shared_server, f"LOCAL:refused-{tag}") is None


def test_stow_into_a_case_inbox_and_into_one_study(shared_server, tag) -> None:
    with shared_server.examiner() as client:
        case = client.post(f"{API}/cases", json={"number": f"stow-{tag}"}).json()
    knee = radiograph(f"inbox-{tag}", f"unknown-{tag}")
    study = uids(knee).StudyInstanceUID
    other_study = radiograph(f"inbox-other-{tag}", f"unknown-{tag}")

    answer = stow(shared_server, f"/cases/{case['id']}/studies/{study}", knee, other_study)
    no_case = stow(shared_server, "/cases/999999/studies", knee)

    assert answer.status_code == 202, answer.text
    [stored] = items(answer, REFERENCED)
    [failed] = items(answer, FAILED)
    assert value(failed, FAILURE_REASON) == DATASET_DOES_NOT_MATCH
    assert f"not to study {study}" in value(failed, REASON_TEXT)
    with shared_server.examiner() as client:
        inbox = client.get(f"{API}/cases/{case['id']}/inbox").json()
        assert client.get(value(stored, RETRIEVE_URL)).content == knee
    assert [(i["sop_instance_uid"], i["received_via"], i["sender"]) for i in inbox] == [
        (uids(knee).SOPInstanceUID, "stow-rs", "examiner in tests")
    ]
    assert person(shared_server, f"LOCAL:unknown-{tag}") is None  # the inbox, not the gallery
    assert no_case.status_code == 404


def test_orthanc_sends_a_study_by_stow_rs(shared_server, orthanc: Orthanc, tag) -> None:
    knee = radiograph(f"orthanc-stow-{tag}", f"orthanc-stow-{tag}")
    uploaded = orthanc.upload(knee)
    orthanc.add_dicomweb_server(
        f"radmatch-{tag}",
        f"{shared_server.url}/dicomweb",
        headers={"X-API-Key": shared_server.examiner_key},
    )

    orthanc.stow_to_server(f"radmatch-{tag}", [uploaded["ParentStudy"]])

    arrived = person(shared_server, f"LOCAL:orthanc-stow-{tag}")
    assert sop_uids(arrived) == [uids(knee).SOPInstanceUID]
    assert arrived["images"][0]["sha256"] == hashlib.sha256(knee).hexdigest()


def test_stow_refuses_bodies_and_instances_over_the_limits(tmp_path, checkpoint) -> None:
    """Against a server with a 100 kB upload limit: an instance over it, or a body over 16 such
    instances (declared, or sent chunked), is refused whole before anything is stored."""
    limit = 100_000
    server = new_server(
        tmp_path, f"sqlite:///{tmp_path / 'radmatch.db'}", checkpoint, max_upload_bytes=str(limit)
    )
    knee = radiograph("limits", "limits")
    large = bytes(limit + 1)
    many = multipart(*[bytes(limit)] * (body_limit(limit) // limit + 1))
    try:
        over_part = stow(server, "/studies", knee, large)
        with server.client(server.examiner_key) as client:
            declared = client.post(
                "/dicomweb/studies", content=many, headers={"Content-Type": STOW_TYPE}
            )
            chunked = client.post(
                "/dicomweb/studies",
                content=(many[i : i + 65536] for i in range(0, len(many), 65536)),
                headers={"Content-Type": STOW_TYPE},
            )
        within = stow(server, "/studies", knee)
    finally:
        server.stop()

    assert over_part.status_code == 413
    assert f"part 2 is {len(large)} bytes" in over_part.json()["detail"]
    assert "nothing was stored" in over_part.json()["detail"]
    for refused in (declared, chunked):
        assert refused.status_code == 413
        assert "at most 16 instances" in refused.json()["detail"]
    assert within.status_code == 200, within.text  # the knee alone, stored only now
    assert items(within, REFERENCED)[0][SOP_INSTANCE]["Value"] == [uids(knee).SOPInstanceUID]


# --- Pulling from a PACS ---------------------------------------------------------------------


@dataclass
class Pacs:
    """Orthanc holding two patients' studies, registered with radmatch as a DICOMweb server.
    One of the second patient's radiographs carries the StudyInstanceUID of one of the first's
    (two studies merged by mistake), so a search of that study answers with both patients'."""

    name: str
    first: str  # PatientIDs
    second: str
    radiographs: dict[str, list[bytes]] = field(default_factory=dict)
    ct: bytes = b""


@pytest.fixture(scope="module")
def pacs(shared_server, orthanc: Orthanc, tag) -> Pacs:
    found = Pacs(f"pacs-{tag}", f"P-{tag}", f"Q-{tag}")
    found.radiographs = {
        found.first: [
            radiograph(f"pull-{tag}-1", found.first, acquired=date(2015, 3, 2), side="L"),
            radiograph(f"pull-{tag}-2", found.first, acquired=date(2019, 7, 9), side="R"),
        ],
        found.second: [
            radiograph(f"pull-{tag}-3", found.second, acquired=date(2018, 1, 5)),
            in_study(
                radiograph(f"pull-{tag}-4", found.second, acquired=date(2020, 2, 2)),
                uids(radiograph(f"pull-{tag}-1", found.first)).StudyInstanceUID,
            ),
        ],
    }
    found.ct = ct_image(found.first)
    for data in [*found.radiographs[found.first], *found.radiographs[found.second], found.ct]:
        orthanc.upload(data)
    body = {"name": found.name, "base_url": orthanc.dicomweb_url + "/", "issuer": "HOSP"}
    with shared_server.admin() as client:
        registered = client.post(f"{API}/admin/dicomweb/servers", json=body)
    assert registered.status_code == 201, registered.text
    return found


def in_study(data: bytes, study_instance_uid: str) -> bytes:
    ds = pydicom.dcmread(BytesIO(data))
    ds.StudyInstanceUID = study_instance_uid
    return saved(ds)


def run_cli(
    server: Server, tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`radmatch ARGS` with the server's settings (and `env`), from empty working, home and
    temporary folders (which must stay empty)."""
    folders = {name: tmp_path / name for name in ("cwd", "home", "tmp")}
    for folder in folders.values():
        folder.mkdir(exist_ok=True)
    env = {**server.env, **env, "HOME": str(folders["home"]), "TMPDIR": str(folders["tmp"])}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=folders["cwd"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    written = [path for folder in folders.values() for path in folder.rglob("*")]
    assert written == [], f"radmatch {args[0]} wrote outside its data directory: {written}"
    return result


def test_pull_brings_one_patients_radiographs_in_and_refuses_the_rest(
    shared_server, pacs: Pacs, tmp_path
) -> None:
    pulled = run_cli(
        shared_server, tmp_path, "pull", "--server", pacs.name, "--patient-id", pacs.first
    )
    again = run_cli(
        shared_server, tmp_path, "pull", "--server", pacs.name, "--patient-id", pacs.first
    )

    assert pulled.returncode == 0, pulled.stderr
    assert "4 instances; 2 stored, 0 already stored, 2 refused" in pulled.stdout, pulled.stdout
    assert f"refused {uids(pacs.ct).SOPInstanceUID} (0x0122): CT Image Storage" in pulled.stdout
    intruder = uids(pacs.radiographs[pacs.second][1]).SOPInstanceUID
    assert f"refused {intruder} (0xA900)" in pulled.stdout
    assert f"is of PatientID {pacs.second}, not {pacs.first}" in pulled.stdout
    stored = person(shared_server, f"HOSP:{pacs.first}")
    expected = {uids(data).SOPInstanceUID: data for data in pacs.radiographs[pacs.first]}
    assert sop_uids(stored) == sorted(expected)
    assert sorted((i["acquisition_date"], i["side"]) for i in stored["images"]) == [
        ("2015-03-02", "L"),
        ("2019-07-09", "R"),
    ]
    assert person(shared_server, f"HOSP:{pacs.second}") is None
    assert again.returncode == 0, again.stderr
    assert "0 stored, 2 already stored, 2 refused" in again.stdout, again.stdout
    assert f"gallery person {stored['id']}" in again.stdout
    assert len(person(shared_server, f"HOSP:{pacs.first}")["images"]) == 2


def test_pull_says_what_went_wrong_without_a_traceback(shared_server, pacs: Pacs, tmp_path) -> None:
    away = {"name": f"away-{pacs.name}", "base_url": f"http://127.0.0.1:{free_port()}/dicom-web"}
    with shared_server.admin() as client:
        client.post(f"{API}/admin/dicomweb/servers", json={**away, "issuer": "HOSP"})

    unreachable = run_cli(
        shared_server, tmp_path, "pull", "--server", away["name"], "--patient-id", "X"
    )
    unknown = run_cli(shared_server, tmp_path, "pull", "--server", "nobody", "--patient-id", "X")

    assert unreachable.returncode != 0
    assert f"cannot reach DICOMweb server {away['name']!r}" in unreachable.stderr
    assert "Connection refused" in unreachable.stderr
    assert unknown.returncode != 0
    assert "no DICOMweb server named 'nobody'" in unknown.stderr
    for result in (unreachable, unknown):
        assert "Traceback" not in result.stderr, result.stderr


def test_the_admin_api_pulls_by_a_job(shared_server, pacs: Pacs, tmp_path) -> None:
    with shared_server.admin() as client:
        started = client.post(
            f"{API}/admin/dicomweb/servers/{pacs.name}/pulls", json={"patient_id": pacs.second}
        )
        unknown = client.post(
            f"{API}/admin/dicomweb/servers/nobody/pulls", json={"patient_id": "X"}
        )
        wildcard = client.post(
            f"{API}/admin/dicomweb/servers/{pacs.name}/pulls", json={"patient_id": "P*"}
        )
        down = {"name": f"down-{pacs.name}", "issuer": "HOSP"}
        down["base_url"] = f"http://127.0.0.1:{free_port()}/dicom-web"
        assert client.post(f"{API}/admin/dicomweb/servers", json=down).status_code == 201
        failing = client.post(
            f"{API}/admin/dicomweb/servers/{down['name']}/pulls", json={"patient_id": "X"}
        )
    with shared_server.examiner() as client:
        examiner = client.post(
            f"{API}/admin/dicomweb/servers/{pacs.name}/pulls", json={"patient_id": pacs.second}
        )
    assert started.status_code == 202, started.text
    assert started.json()["kind"] == "dicomweb_pull"
    worker = WorkerProcess(shared_server.env, tmp_path / "worker.log", once=True).start()
    try:
        job = shared_server.wait_for_job(started.json()["id"])
        failed = shared_server.wait_for_job(failing.json()["id"], statuses=("failed",))
    finally:
        worker.stop()

    stored = person(shared_server, f"HOSP:{pacs.second}")
    assert sop_uids(stored) == sorted(
        uids(data).SOPInstanceUID for data in pacs.radiographs[pacs.second]
    )
    assert sorted(image["acquisition_date"] for image in stored["images"]) == [
        "2018-01-05",
        "2020-02-02",
    ]
    result = job["result"]
    assert (result["studies"], result["instances"], result["stored"]) == (2, 3, 2)
    [other_patients] = result["refused"]
    first_knee = uids(pacs.radiographs[pacs.first][0]).SOPInstanceUID
    assert (other_patients["sop_instance_uid"], other_patients["status"]) == (first_knee, 0xA900)
    assert result["person_ids"] == [stored["id"]]
    assert f"cannot reach DICOMweb server {down['name']!r}" in failed["error"]
    assert failed["result"] is None
    assert (unknown.status_code, examiner.status_code, wildcard.status_code) == (404, 403, 422)
    assert "wildcard" in wildcard.json()["detail"]


def test_registered_servers_keep_their_secrets(shared_server, tag) -> None:
    body = {
        "name": f"secret-{tag}",
        "base_url": "https://pacs.example.org/dicomweb",
        "issuer": "HOSP",
        "auth": {"type": "basic", "username": "radmatch", "password": "s3cret"},
    }
    with shared_server.admin() as client:
        added = client.post(f"{API}/admin/dicomweb/servers", json=body)
        twice = client.post(f"{API}/admin/dicomweb/servers", json=body)
        listed = client.get(f"{API}/admin/dicomweb/servers").json()
        refusals = [
            client.post(f"{API}/admin/dicomweb/servers", json={**body, **change})
            for change in (
                {"name": "no spaces"},
                {"name": f"ftp-{tag}", "base_url": "ftp://pacs.example.org"},
                {"name": f"creds-{tag}", "base_url": "https://user:pw@pacs.example.org"},
                {
                    "name": f"header-{tag}",
                    "auth": {"type": "header", "name": "X-Key", "value": "a\nb"},
                },
                {"name": f"token-{tag}", "auth": {"type": "bearer"}},
            )
        ]
        removed = client.delete(f"{API}/admin/dicomweb/servers/secret-{tag}")
        gone = client.delete(f"{API}/admin/dicomweb/servers/secret-{tag}")

    assert added.status_code == 201, added.text
    assert added.json()["auth"] == {"type": "basic", "username": "radmatch"}
    assert twice.status_code == 409
    assert [s["auth"] for s in listed if s["name"] == body["name"]] == [added.json()["auth"]]
    assert "s3cret" not in str(listed)
    assert [r.status_code for r in refusals] == [422] * len(refusals), [r.text for r in refusals]
    assert "credentials" in refusals[2].json()["detail"]
    assert (removed.status_code, gone.status_code) == (200, 404)
    engine = make_engine(shared_server.env["RADMATCH_DATABASE_URL"])
    with session_factory(engine)() as session:
        audited = session.scalars(
            select(AuditEntry.details).where(AuditEntry.action.like("dicomweb.server.%"))
        ).all()
    engine.dispose()
    assert "s3cret" not in str(audited)
    assert any(entry["name"] == body["name"] for entry in audited)


def test_the_command_line_registers_lists_and_removes_servers(shared_server, tag, tmp_path):
    name = f"cli-{tag}"
    add = ["dicomweb-servers", "add", "--name", name, "--issuer", "HOSP", "--auth", "header"]
    add += ["--url", "https://pacs.example.org/dicom-web/", "--header", "X-Key"]

    added = run_cli(shared_server, tmp_path, *add, RADMATCH_DICOMWEB_SECRET="s3cret")
    twice = run_cli(shared_server, tmp_path, *add, RADMATCH_DICOMWEB_SECRET="s3cret")
    no_secret = run_cli(
        shared_server, tmp_path, *add[:6], "--url", "https://x.org", "--auth", "bearer"
    )
    listed = run_cli(shared_server, tmp_path, "dicomweb-servers", "list")
    removed = run_cli(shared_server, tmp_path, "dicomweb-servers", "remove", name)

    assert added.returncode == 0, added.stderr
    assert "https://pacs.example.org/dicom-web (PatientIDs of HOSP" in added.stdout
    assert twice.returncode != 0
    assert f"a DICOMweb server named {name!r} is registered already" in twice.stderr
    assert no_secret.returncode != 0
    assert "RADMATCH_DICOMWEB_SECRET" in no_secret.stderr
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(f"{name}\t")]
    assert "X-Key" in line and "s3cret" not in listed.stdout
    assert removed.returncode == 0, removed.stderr
    assert f"removed {name}" in removed.stdout
    with shared_server.admin() as client:
        names = [server["name"] for server in client.get(f"{API}/admin/dicomweb/servers").json()]
    assert name not in names
    for result in (twice, no_secret):
        assert "Traceback" not in result.stderr


# --- A kill during STOW-RS -------------------------------------------------------------------


@dataclass
class Sent:
    """One STOW-RS request as the client saw it."""

    instances: dict[str, bytes]  # SOP Instance UID -> bytes sent
    status: int | None = None  # None: no answer (the server was killed)
    referenced: list[str] = field(default_factory=list)


def stow_until_killed(server: Server, prefix: str, stop: threading.Event, out: list[Sent]) -> None:
    rng = random.Random(prefix)
    with server.client(server.examiner_key) as client:
        number = 0
        while not stop.is_set():
            objects = []
            for _ in range(rng.randint(1, 3)):
                number += 1
                objects.append(radiograph(f"{prefix}-{number}", f"{prefix}-{rng.randint(1, 3)}"))
            sent = Sent({uids(data).SOPInstanceUID: data for data in objects})
            out.append(sent)
            try:
                answer = client.post(
                    "/dicomweb/studies",
                    content=multipart(*objects),
                    headers={"Content-Type": STOW_TYPE},
                )
            except httpx.TransportError:
                return
            sent.status = answer.status_code
            sent.referenced = [value(item, SOP_INSTANCE) for item in items(answer, REFERENCED)]


def test_a_kill_during_stow_rs_loses_nothing_acknowledged(
    tmp_path, database_url, checkpoint
) -> None:
    server = new_server(tmp_path, database_url, checkpoint)
    calls: list[Sent] = []
    try:
        for cycle, delay in enumerate((0.3, 1.1)):
            stop, cycle_calls = threading.Event(), []
            threads = [
                threading.Thread(
                    target=stow_until_killed, args=(server, f"kill-{cycle}-{n}", stop, cycle_calls)
                )
                for n in range(2)
            ]
            for thread in threads:
                thread.start()
            # The first requests after a start are slow (the model warms up): kill once they flow.
            deadline = time.monotonic() + 60
            while not any(c.status == 200 for c in cycle_calls) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(delay)
            server.process.kill()
            server.process.wait()
            stop.set()
            for thread in threads:
                thread.join()
            calls.extend(cycle_calls)
            server.start()
    finally:
        server.stop()

    acknowledged = [c for c in calls if c.status == 200]
    assert len(acknowledged) >= 2
    assert any(c.status is None for c in calls)  # a kill came with requests in flight
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    originals = Path(server.env["RADMATCH_DATA_DIR"]) / "originals"
    with sessions() as session:
        for call in acknowledged:
            assert sorted(call.referenced) == sorted(call.instances)
            for sop, data in call.instances.items():
                image = session.scalar(
                    select(Image).where(Image.sop_instance_uid == sop, Image.deleted_at.is_(None))
                )
                assert image is not None, f"acknowledged instance {sop} was lost"
                digest = hashlib.sha256(data).hexdigest()
                assert image.sha256 == digest
                assert (originals / digest[:2] / digest[2:4] / digest).read_bytes() == data
                assert session.scalar(
                    select(Embedding.image_id).where(Embedding.image_id == image.id)
                )
    problems = load_bench("crash_harness").store_and_row_problems(sessions, originals)
    engine.dispose()
    assert problems == []


@pytest.mark.slow
def test_a_killed_pull_resumes_with_every_radiograph_in_once(
    shared_server, orthanc: Orthanc, tag, tmp_path
) -> None:
    """`radmatch pull` killed (SIGKILL) part-way: what it committed stays whole, and pulling again
    brings in the rest, each radiograph once, with no original or row left half-done."""
    patient = f"KILL-{tag}"
    radiographs = [radiograph(f"kill-pull-{tag}-{n}", patient) for n in range(24)]
    for data in radiographs:
        orthanc.upload(data)
    name = f"kill-{tag}"
    body = {"name": name, "base_url": orthanc.dicomweb_url, "issuer": "KILLHOSP"}
    with shared_server.admin() as client:
        assert client.post(f"{API}/admin/dicomweb/servers", json=body).status_code == 201
    command = [sys.executable, "-m", "cli", "pull", "--server", name, "--patient-id", patient]
    env = {**shared_server.env, "PYTHONPATH": str(REPO)}
    pulling = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    ref = f"KILLHOSP:{patient}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and pulling.poll() is None:
        found = person(shared_server, ref)
        if found is not None and len(found["images"]) >= 3:
            break
        time.sleep(0.05)
    pulling.kill()
    pulling.wait()
    stored_before = len(person(shared_server, ref)["images"])
    assert 3 <= stored_before < len(radiographs), f"the kill came too late: {stored_before}"

    resumed = run_cli(shared_server, tmp_path, "pull", "--server", name, "--patient-id", patient)

    assert resumed.returncode == 0, resumed.stderr
    after = person(shared_server, ref)
    assert sop_uids(after) == sorted(uids(data).SOPInstanceUID for data in radiographs)
    engine = make_engine(shared_server.env["RADMATCH_DATABASE_URL"])
    try:
        originals = Path(shared_server.env["RADMATCH_DATA_DIR"]) / "originals"
        problems = load_bench("crash_harness").store_and_row_problems(
            session_factory(engine), originals
        )
    finally:
        engine.dispose()
    assert problems == []
