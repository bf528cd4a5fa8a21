"""The C-STORE receiver as senders meet it: a real `radmatch dicom-listen` process beside a real
`radmatch serve` on the same database and data directory, sent to by dcmtk's storescu and
echoscu, by Orthanc and by pynetdicom.

A module's tests share one server and one receiver per database, and make their own senders,
people and cases; the first test runs before any sender is registered. The receiver runs with its
working directory, HOME and TMPDIR in empty folders, which the last test finds still empty."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.dicom.receiver import ReceiverSetupError, listening
from app.storage.database import make_engine, session_factory
from app.storage.tables import AuditEntry, Embedding, Image, InboxItem, Person
from bench.crash_harness import store_and_row_problems
from tests.support.dicom_peers import Orthanc, echoscu, run_tool, storescu
from tests.support.images import ct_image, multiframe_dx, phantom_dicom, structured_report
from tests.support.servers import (
    REPO,
    Server,
    WorkerProcess,
    free_port,
    seeded_checkpoint,
    service_env,
    terminate,
)

API = "/api/v1"
SOURCES = f"{API}/admin/dicom/sources"
READY = "receiving DICOM as"


@dataclass
class Listener:
    """A `radmatch dicom-listen` process with the server's environment, its log in `folder`, and
    its working directory, HOME and TMPDIR in empty folders there."""

    env: dict[str, str]
    folder: Path
    options: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.folder / "receiver.log"

    @property
    def outside(self) -> dict[str, Path]:
        """The folders the receiver must write nothing to."""
        return {name: self.folder / name for name in ("cwd", "home", "tmp")}

    def start(self) -> Listener:
        for folder in self.outside.values():
            folder.mkdir(parents=True, exist_ok=True)
        env = self.env | {
            "HOME": str(self.outside["home"]),
            "TMPDIR": str(self.outside["tmp"]),
            "PYTHONPATH": str(REPO),
        }
        logged = len(self.log_text())
        command = [sys.executable, "-m", "cli", "dicom-listen", "--port", str(self.port)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*command, *self.options],
                env=env,
                cwd=self.outside["cwd"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the receiver exited:\n{self.log_text()}")
            if READY in self.log_text()[logged:]:
                return self
            time.sleep(0.1)
        raise AssertionError(f"the receiver did not start:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        terminate(self.process, timeout=30)

    def written_outside(self) -> list[Path]:
        return [path for folder in self.outside.values() for path in folder.rglob("*")]


@pytest.fixture(scope="module")
def receiver(shared_server: Server, tmp_path_factory) -> Iterator[Listener]:
    running = Listener(shared_server.env, tmp_path_factory.mktemp("receiver")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sessions(shared_server: Server) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(shared_server.env["RADMATCH_DATABASE_URL"])
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def run() -> str:
    """Tells this module's runs apart where they share something: the Orthanc fixture holds
    what both databases' runs send it."""
    return uuid.uuid4().hex[:8]


def knee(key: str, **study: object) -> bytes:
    """A DX knee file of person `key` with pixels of its own."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return phantom_dicom((rng.random((96, 96)) * 65535).astype(np.uint16), key, **study)


def written(folder: Path, objects: dict[str, bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in objects.items():
        (folder / f"{name}.dcm").write_bytes(data)
    return [folder / f"{name}.dcm" for name in objects]


def register(server: Server, ae_title: str, **where: object) -> int:
    with server.admin() as admin:
        response = admin.post(SOURCES, json={"ae_title": ae_title, **where})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def revoke(server: Server, source_id: int) -> None:
    with server.admin() as admin:
        assert admin.delete(f"{SOURCES}/{source_id}").status_code == 200


def person_named(server: Server, ref: str) -> dict | None:
    """The gallery person with this external reference, with their images."""
    with server.examiner() as client:
        people = client.get(f"{API}/people", params={"external_ref": ref}).json()["items"]
        if not people:
            return None
        return client.get(f"{API}/people/{people[0]['id']}").json()


def sop_instance(data: bytes) -> str:
    return pydicom.dcmread(BytesIO(data), stop_before_pixels=True).SOPInstanceUID


def counts(sessions: sessionmaker[Session]) -> tuple[int, int, int, int]:
    """People, images, inbox items and audit entries in the database."""
    with sessions() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (Person, Image, InboxItem, AuditEntry)
        )


def wait_until_indexed(server: Server, sessions: sessionmaker[Session]) -> None:
    """Until the server's index holds every live image (the receiver's too)."""
    with sessions() as session:
        images = session.scalar(select(func.count()).where(Image.deleted_at.is_(None)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        checks = server.client().get("/readyz").json()["checks"]
        if checks.get("index") == "ok" and checks["index_size"] >= images:
            return
        time.sleep(0.2)
    raise AssertionError(f"the server's index holds fewer than {images} images: {checks}")


def same_dataset(sent: bytes, stored: bytes) -> bool:
    """The stored original holds the dataset that was sent, element for element."""
    return pydicom.dcmread(BytesIO(sent)) == pydicom.dcmread(BytesIO(stored))


def test_nobody_may_associate_before_a_source_is_registered(receiver: Listener) -> None:
    # pynetdicom's own calling AE title check lets everyone in while its list is empty.
    for title in ("ANYONE", "RADMATCH"):
        answer = echoscu(receiver.port, calling_aet=title)
        assert answer.returncode == 1, answer.stderr
        assert "Calling AE Title Not Recognized" in answer.stderr


def test_echo_from_a_registered_sender_and_rejections(
    shared_server: Server, receiver: Listener
) -> None:
    register(shared_server, "ECHOER", issuer="echo-test")
    answer = echoscu(receiver.port, calling_aet="ECHOER")
    assert answer.returncode == 0, answer.stderr
    assert "Received Echo Response (Success)" in answer.stderr

    unknown = echoscu(receiver.port, calling_aet="STRANGER")
    assert unknown.returncode == 1
    assert "Rejected Permanent, Source: Service User" in unknown.stderr
    assert "Calling AE Title Not Recognized" in unknown.stderr
    assert "rejected an association from 'STRANGER'" in receiver.log_text()

    elsewhere = echoscu(receiver.port, calling_aet="ECHOER", called_aet="OTHERPACS")
    assert elsewhere.returncode == 1
    assert "Called AE Title Not Recognized" in elsewhere.stderr


def test_the_association_rule_as_a_pynetdicom_requestor_sees_it(
    shared_server: Server, receiver: Listener
) -> None:
    requestor = AE(ae_title="NOT-YET")
    requestor.add_requested_context(Verification)
    rejected = requestor.associate("127.0.0.1", receiver.port, ae_title="RADMATCH")
    assert rejected.is_rejected
    answer = rejected.acceptor.primitive
    assert (answer.result, answer.result_source, answer.diagnostic) == (0x01, 0x01, 0x03)

    # Registered at run time: the next association is accepted, no restart.
    register(shared_server, "NOT-YET", issuer="rule-test")
    accepted = requestor.associate("127.0.0.1", receiver.port, ae_title="RADMATCH")
    assert accepted.is_established
    assert accepted.send_c_echo().Status == 0x0000
    accepted.release()


def radmatch(server: Server, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *arguments],
        env=server.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_admin_registers_and_revokes_senders_at_the_command_line(
    shared_server: Server, receiver: Listener, sessions: sessionmaker[Session], run: str
) -> None:
    with shared_server.examiner() as client:
        case = client.post(f"{API}/cases", json={"number": f"cli-{run}"})
    assert case.status_code == 201, case.text
    added = radmatch(
        shared_server,
        "dicom-sources",
        "add",
        "--ae-title",
        "CLIMORTUARY",
        "--case-number",
        f"cli-{run}",
        "--description",
        "the county mortuary",
    )
    assert added.returncode == 0, added.stderr
    source_id = int(added.stdout.split()[1])
    listed = radmatch(shared_server, "dicom-sources", "list").stdout
    assert f"{source_id}\tCLIMORTUARY\tthe inbox of case {case.json()['id']}" in listed
    assert echoscu(receiver.port, calling_aet="CLIMORTUARY").returncode == 0

    revoked = radmatch(shared_server, "dicom-sources", "revoke", str(source_id))
    assert revoked.returncode == 0, revoked.stderr
    assert echoscu(receiver.port, calling_aet="CLIMORTUARY").returncode == 1
    with sessions() as session:
        audited = session.scalars(
            select(AuditEntry).where(
                AuditEntry.target_type == "dicom_source", AuditEntry.target_id == source_id
            )
        ).all()
    assert [(e.action, e.key_id) for e in audited] == [
        ("dicom.source.register", None),
        ("dicom.source.revoke", None),
    ]

    unknown = radmatch(
        shared_server, "dicom-sources", "add", "--ae-title", "X", "--case-number", "no-such"
    )
    assert unknown.returncode == 1
    assert "no case numbered 'no-such'" in unknown.stderr


def test_a_pacs_sends_known_people_into_the_gallery(
    shared_server: Server, receiver: Listener, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    register(shared_server, "CITYPACS", issuer="CITY")
    objects = {
        "ann-r": knee("ann", side="R", uid_key="ann-r"),
        "ann-l": knee("ann", side="L", uid_key="ann-l"),
        "bob-r": knee("bob", side="R", uid_key="bob-r"),
    }
    files = written(tmp_path, objects)
    sent = storescu(receiver.port, files, calling_aet="CITYPACS")
    assert sent.returncode == 0, sent.stderr
    assert sent.stderr.count("Received Store Response (Success)") == 3

    ann, bob = person_named(shared_server, "CITY:ann"), person_named(shared_server, "CITY:bob")
    assert ann is not None and bob is not None
    assert (ann["sex"], len(ann["images"]), len(bob["images"])) == ("F", 2, 1)
    with sessions() as session:
        uids = set(
            session.scalars(select(Image.sop_instance_uid).where(Image.person_id == ann["id"]))
        )
        uploads = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "image.upload",
                AuditEntry.target_id.in_([im["id"] for im in ann["images"] + bob["images"]]),
            )
        ).all()
    assert uids == {sop_instance(objects["ann-r"]), sop_instance(objects["ann-l"])}
    assert [(e.details["via"], e.details["sender"], e.key_id) for e in uploads] == [
        ("c-store", "CITYPACS", None)
    ] * 3

    wait_until_indexed(shared_server, sessions)
    with shared_server.examiner() as client:
        answer = client.post(f"{API}/search", files={"file": ("q.dcm", objects["bob-r"])})
    assert answer.status_code == 200, answer.text
    assert answer.json()["candidates"][0]["external_ref"] == "CITY:bob"

    # Sent again, by a PACS that retries a whole study: success, and nothing new.
    before = counts(sessions)
    again = storescu(receiver.port, files, calling_aet="CITYPACS")
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("Received Store Response (Success)") == 3
    assert counts(sessions) == before
    assert "already there" in receiver.log_text()


def test_an_object_over_the_size_limit_is_a_failure_not_a_retry(
    shared_server: Server, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Over RADMATCH_MAX_UPLOAD_BYTES an object is refused with 0xC000 (a failure, so the sender
    does not retry it as it would 0xA700, out of resources), its size named, nothing stored."""
    register(shared_server, "BIGPACS", issuer="BIG")
    small = Listener(shared_server.env | {"RADMATCH_MAX_UPLOAD_BYTES": "4096"}, tmp_path).start()
    try:
        before = counts(sessions)
        refused = storescu(
            small.port, written(tmp_path, {"big": knee("big")}), calling_aet="BIGPACS"
        )
    finally:
        small.stop()
    assert "Received Store Response (Error: CannotUnderstand)" in refused.stderr, refused.stderr
    assert refused.returncode == 0xC0  # the status's high byte
    assert "this receiver takes at most 4096" in small.log_text()
    assert counts(sessions) == before


def test_what_is_not_a_single_radiograph_is_refused_with_its_reason(
    shared_server: Server, receiver: Listener, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    register(shared_server, "MIXEDPACS", issuer="MIXED")
    before = counts(sessions)
    ct = written(tmp_path, {"ct": ct_image("carl")})
    refused = storescu(receiver.port, ct, calling_aet="MIXEDPACS", extra=["-d"])
    assert refused.returncode == 1  # the status's high byte, 0x01
    assert "0x0122: Refused: SOP Class not supported" in refused.stderr
    assert "CT Image Storage (modality CT) is not a projection radiograph" in refused.stderr
    logged = receiver.log_text()
    assert (
        f"refused SOP instance {sop_instance(ct_image('carl'))} from 'MIXEDPACS': 0x0122" in logged
    )
    assert "radmatch takes CR, DX and secondary capture images" in logged

    others = written(tmp_path, {"sr": structured_report("sue"), "mf": multiframe_dx("mia")})
    # -nh: on past the first refusal, as a PACS sending a whole study does.
    refused = storescu(receiver.port, others, calling_aet="MIXEDPACS", extra=["-nh"])
    assert "Received Store Response (Refused: SOPClassNotSupported)" in refused.stderr
    assert "Received Store Response (Error: DataSetDoesNotMatchSOPClass)" in refused.stderr
    assert "has 3 frames" in receiver.log_text()
    assert counts(sessions) == before
    assert all(person_named(shared_server, f"MIXED:{k}") is None for k in ("carl", "sue", "mia"))


def test_unknown_and_revoked_senders_store_nothing(
    shared_server: Server, receiver: Listener, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    files = written(tmp_path, {"dan": knee("dan")})
    before = counts(sessions)
    unknown = storescu(receiver.port, files, calling_aet="NOBODY")
    assert unknown.returncode == 1
    assert "Calling AE Title Not Recognized" in unknown.stderr

    source = register(shared_server, "GONEPACS", issuer="GONE")
    revoke(shared_server, source)
    revoked = storescu(receiver.port, files, calling_aet="GONEPACS")
    assert revoked.returncode == 1
    assert "Calling AE Title Not Recognized" in revoked.stderr
    assert counts(sessions)[:3] == before[:3]  # registering and revoking were audited
    assert person_named(shared_server, "GONE:dan") is None


def test_a_source_revoked_during_an_association_sends_no_more(
    shared_server: Server, receiver: Listener, tmp_path: Path
) -> None:
    source = register(shared_server, "SLOWPACS", issuer="SLOW")
    first, second = written(tmp_path, {"eve": knee("eve"), "fay": knee("fay")})
    requestor = AE(ae_title="SLOWPACS")
    requestor.add_requested_context(DigitalXRayImageStorageForPresentation)
    association = requestor.associate("127.0.0.1", receiver.port, ae_title="RADMATCH")
    assert association.is_established
    try:
        assert association.send_c_store(first).Status == 0x0000
        revoke(shared_server, source)
        answer = association.send_c_store(second)
    finally:
        association.release()
    assert answer.Status == 0x0124  # Refused: Not Authorised
    assert "revoked" in answer.ErrorComment
    assert person_named(shared_server, "SLOW:eve") is not None
    assert person_named(shared_server, "SLOW:fay") is None


def test_a_mortuary_sends_into_a_case_inbox(
    shared_server: Server,
    receiver: Listener,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    run: str,
) -> None:
    with shared_server.examiner() as client:
        case = client.post(f"{API}/cases", json={"number": f"inbox-{run}"})
    assert case.status_code == 201, case.text
    case_id = case.json()["id"]
    register(shared_server, "MORTUARY", case_id=case_id)
    data = knee("unknown-1")
    people = counts(sessions)[0]
    sent = storescu(receiver.port, written(tmp_path, {"q": data}), calling_aet="MORTUARY")
    assert sent.returncode == 0, sent.stderr

    with shared_server.examiner() as client:
        items = client.get(f"{API}/cases/{case_id}/inbox").json()
        assert [(i["received_via"], i["sender"]) for i in items] == [("c-store", "MORTUARY")]
        assert items[0]["sop_instance_uid"] == sop_instance(data)
        original = client.get(f"{API}/cases/{case_id}/inbox/{items[0]['id']}/original")
        assert same_dataset(data, original.content)
        searched = client.post(
            f"{API}/cases/{case_id}/inbox/{items[0]['id']}/searches", data={"k": 3}
        )
    assert searched.status_code == 200, searched.text
    assert searched.json()["candidates"]
    assert counts(sessions)[0] == people  # the unknown person is not in the gallery


def test_orthanc_pushes_studies_to_radmatch(
    shared_server: Server, receiver: Listener, orthanc: Orthanc, run: str
) -> None:
    register(shared_server, orthanc.aet, issuer=f"ORTHANC-{run}")
    studies = [
        orthanc.upload(knee(f"gus-{run}", side=side, uid_key=f"gus-{run}-{side}"))["ParentStudy"]
        for side in ("L", "R")
    ]
    orthanc.add_modality("radmatch", "RADMATCH", "127.0.0.1", receiver.port)
    pushed = orthanc.store_to_modality("radmatch", studies)
    assert (pushed["InstancesCount"], pushed["FailedInstancesCount"]) == (2, 0), pushed
    gus = person_named(shared_server, f"ORTHANC-{run}:gus-{run}")
    assert gus is not None
    assert sorted(image["side"] for image in gus["images"]) == ["L", "R"]


@pytest.mark.slow
def test_after_an_admin_activates_another_model_the_receiver_embeds_with_it(
    shared_server: Server, receiver: Listener, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    register(shared_server, "NEWMODELPACS", issuer="NEWMODEL")
    models = Path(shared_server.env["RADMATCH_DATA_DIR"]) / "models"  # where the API registers from
    models.mkdir(exist_ok=True)
    other = seeded_checkpoint(models / "other.pt", input_size=96)
    with shared_server.admin() as admin:
        registered = admin.post(f"{API}/admin/models", json={"checkpoint_path": str(other)})
        assert registered.status_code == 201, registered.text
        version = registered.json()["id"]
        activation = admin.post(f"{API}/admin/models/{version}/activate")
    worker = WorkerProcess(shared_server.env, tmp_path / "worker.log").start()
    try:
        shared_server.wait_for_job(activation.json()["id"])
    finally:
        worker.stop()
    shared_server.wait_until_serving(version)

    data = knee("ivy")
    sent = storescu(receiver.port, written(tmp_path, {"ivy": data}), calling_aet="NEWMODELPACS")
    assert sent.returncode == 0, sent.stderr
    ivy = person_named(shared_server, "NEWMODEL:ivy")
    with sessions() as session:
        embedded_with = set(
            session.scalars(
                select(Embedding.model_version_id).where(
                    Embedding.image_id == ivy["images"][0]["id"]
                )
            )
        )
    assert version in embedded_with
    assert f"serving model version {version}" in receiver.log_text()
    wait_until_indexed(shared_server, sessions)
    with shared_server.examiner() as client:
        answer = client.post(f"{API}/search", files={"file": ("q.dcm", data)}).json()
    assert answer["model_version"]["id"] == version
    assert answer["candidates"][0]["external_ref"] == "NEWMODEL:ivy"


@pytest.mark.slow
def test_a_kill_during_intake_loses_nothing_acknowledged(
    shared_server: Server, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    register(shared_server, "KILLEDPACS", issuer="KILL")
    objects = {f"k{number:02d}": knee(f"kill-{number}") for number in range(30)}
    files = written(tmp_path / "files", objects)
    listener = Listener(shared_server.env, tmp_path / "listener").start()
    acknowledged: list[str] = []

    def send_one_by_one(names: list[str]) -> None:
        # One association per object: storescu's exit code acknowledges exactly that one.
        for name in names:
            path = files[list(objects).index(name)]
            if storescu(listener.port, [path], calling_aet="KILLEDPACS").returncode == 0:
                acknowledged.append(name)

    # Three senders at once, so that the kill finds objects in every stage of their intake.
    senders = [
        threading.Thread(target=send_one_by_one, args=(list(objects)[first::3],))
        for first in range(3)
    ]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 120
    while len(acknowledged) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    listener.kill()
    for sender in senders:
        sender.join()
    assert 8 <= len(acknowledged) < len(objects), acknowledged
    listener.start()

    originals = Path(shared_server.env["RADMATCH_DATA_DIR"]) / "originals"
    with sessions() as session:
        for name in acknowledged:
            image = session.scalar(
                select(Image).where(Image.sop_instance_uid == sop_instance(objects[name]))
            )
            assert image is not None, f"{name} was acknowledged and is not stored"
            stored = (originals / image.sha256[:2] / image.sha256[2:4] / image.sha256).read_bytes()
            assert hashlib.sha256(stored).hexdigest() == image.sha256
            assert same_dataset(objects[name], stored)
    assert store_and_row_problems(sessions, originals) == []

    # What got no answer is sent again, as a sender does, and arrives.
    unanswered = [
        path for name, path in zip(objects, files, strict=True) if name not in acknowledged
    ]
    resent = storescu(listener.port, unanswered, calling_aet="KILLEDPACS")
    assert resent.returncode == 0, resent.stderr
    with sessions() as session:
        uids = set(session.scalars(select(Image.sop_instance_uid)))
    assert {sop_instance(data) for data in objects.values()} <= uids
    listener.stop()  # SIGTERM, as an orchestrator stops it
    assert listener.process.returncode == 0, listener.log_text()
    assert listener.log_text().endswith("stopped receiving DICOM\n")
    assert listener.written_outside() == []


@pytest.mark.slow
def test_tls_with_client_certificates(
    shared_server: Server, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    pki = tmp_path / "pki"
    ca, other_ca = certificate_authority(pki, "ca"), certificate_authority(pki, "other-ca")
    server_cert, server_key = signed(pki, "server", ca)
    client_cert, client_key = signed(pki, "client", ca)
    stranger_cert, stranger_key = signed(pki, "stranger", other_ca)
    options = ("--tls-cert", str(server_cert), "--tls-key", str(server_key), "--tls-ca", str(ca[0]))
    listener = Listener(shared_server.env, tmp_path / "listener", options=options).start()
    register(shared_server, "TLSPACS", issuer="TLS")
    trust = ["+cf", str(ca[0])]
    try:
        with_cert = ["+tls", str(client_key), str(client_cert), *trust]
        echo = tls_echo(listener.port, with_cert)
        assert echo.returncode == 0, echo.stderr
        files = written(tmp_path, {"hal": knee("hal")})
        sent = storescu(listener.port, files, calling_aet="TLSPACS", extra=with_cert)
        assert sent.returncode == 0, sent.stderr
        assert person_named(shared_server, "TLS:hal") is not None

        for refused in (
            [],  # plain TCP
            ["+tla", *trust],  # TLS without a client certificate
            ["+tls", str(stranger_key), str(stranger_cert), *trust],  # another CA's
        ):
            answer = tls_echo(listener.port, refused)
            assert answer.returncode != 0, (refused, answer.stderr)
            assert "Received Echo Response" not in answer.stderr

        # Ctrl-C in a terminal: a clean stop.
        listener.process.send_signal(signal.SIGINT)
        assert listener.process.wait(timeout=30) == 0, listener.log_text()
        assert "stopped receiving DICOM" in listener.log_text()
        assert listener.written_outside() == []
    finally:
        listener.stop()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (
            {"tls_cert": Path("/nonexistent.crt"), "tls_key": Path("/nonexistent.key")},
            "cannot load",
        ),
        (
            {"tls_cert": Path("/nonexistent.crt")},
            "TLS needs both a certificate and its private key",
        ),
        ({"ae_title": "A\\B"}, "no backslash"),
        ({"ae_title": "SEVENTEEN-LETTERS"}, "at most 16"),
    ],
)
def test_a_receiver_set_up_wrong_says_why(options: dict[str, object], words: str) -> None:
    with pytest.raises(ReceiverSetupError, match=words):
        listening(Settings(), host="127.0.0.1", **options)


def test_the_command_says_why_it_cannot_listen(tmp_path: Path) -> None:
    env = service_env(tmp_path, f"sqlite:///{tmp_path / 'radmatch.db'}", None)
    done = subprocess.run(
        [sys.executable, "-m", "cli", "dicom-listen", "--tls-key", str(tmp_path / "key.pem")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (
        1,
        "radmatch dicom-listen: TLS needs both a certificate and its private key\n",
    )


def tls_echo(port: int, options: list[str]) -> subprocess.CompletedProcess[str]:
    return run_tool(
        ["echoscu", "-v", "-aet", "TLSPACS", "-aec", "RADMATCH", *options, "127.0.0.1", str(port)]
    )


def certificate_authority(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}"),
        *("-keyout", key, "-out", cert, "-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    return cert, key


def signed(folder: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by `ca`: (certificate, key)."""
    cert, key, request = (folder / f"{name}{suffix}" for suffix in (".crt", ".key", ".csr"))
    extensions = folder / f"{name}.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"),
        *("-keyout", key, "-out", request),
    )
    openssl(
        *("x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-days", "2"),
        *("-set_serial", zlib.crc32(name.encode()), "-extfile", extensions, "-out", cert),
    )
    return cert, key


def openssl(*arguments: object) -> None:
    done = subprocess.run(
        ["openssl", *map(str, arguments)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_receiver_wrote_nothing_outside_the_data_directory(receiver: Listener) -> None:
    assert receiver.written_outside() == []
