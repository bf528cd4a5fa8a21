"""A case exported as a DICOM File-set through a real server, on SQLite and PostgreSQL: the zip's
DICOMDIR read back with pydicom's FileSet and dcmtk's dcmdump, the objects it holds (DICOM
originals byte for byte, PNG ones as Secondary Capture with their pixels), what the
de-identification removes, keeps and moves (the same offset for every date, the codes of the
profile and option), the refusals (no conclusions, burned-in annotation, a purged original) and
the audit entry; and the case page's button."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import SecondaryCaptureImageStorage
from sqlalchemy import select

from app.storage.database import make_engine, session_factory
from app.storage.tables import AuditEntry
from tests.support.images import phantom_dicom, png_bytes, saved
from tests.support.servers import Server

API = "/api/v1"
CASE_NUMBER = "2026/EXP-001"
# What the mortuary's DICOM query says of the unknown person.
QUERY_NAME = "RIVERBANK^UNKNOWN^MALE"
QUERY_BIRTH = "19580214"
QUERY_DATE = date(2024, 6, 3)
PNG_QUERY_DATE = date(2024, 7, 15)
# The gallery: a DICOM radiograph of one person, a PNG of another.
DICOM_PERSON = "EXP-GALLERY-DICOM"
DICOM_PERSON_NAME = "HOLLOWAY^MARGARET"
DICOM_PERSON_BIRTH = "19610923"
DICOM_ACQUIRED = date(2015, 2, 10)
PNG_PERSON = "EXP-GALLERY-PNG"
PNG_ACQUIRED = date(2016, 11, 28)
PRIVATE_SECRET = "SECRET-PRIVATE-VALUE"
# PS3.10 file IDs: up to eight components of up to eight upper-case letters, digits or '_'.
FILE_ID = re.compile(r"[A-Z0-9_]{1,8}(/[A-Z0-9_]{1,8}){0,7}")


def smooth_pixels(seed: int, side: int = 128) -> np.ndarray:
    """Values in [0, 1], different for every seed: a picture to decode and embed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    bones = np.exp(-((x - 0.5) ** 2) / 0.02) * (0.6 + 0.4 * np.cos(6 * y + rng.uniform(0, 6)))
    return np.clip(0.2 + 0.6 * bones + rng.normal(0, 0.02, (side, side)), 0, 1)


def identified_dicom(seed: int, key: str, acquired: date, **elements: object) -> bytes:
    """A phantom DX knee with identifying elements and a private one besides."""
    pixels = (smooth_pixels(seed) * 65535).astype(np.uint16)
    ds = pydicom.dcmread(io.BytesIO(phantom_dicom(pixels, key, acquired=acquired)))
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.InstitutionName = "ST ELSEWHERE MORTUARY"
    ds.OtherPatientIDs = f"{key}-OLD"
    block = ds.private_block(0x0009, "RADMATCH TEST", create=True)
    block.add_new(0x01, "LO", PRIVATE_SECRET)
    return saved(ds)


@dataclass
class Exported:
    data: bytes
    objects: list[tuple[str, Dataset, bytes]]  # (file ID, dataset, file bytes)
    dicomdir: bytes

    def by_sop_class(self, sop_class: str) -> list[Dataset]:
        return [ds for _, ds, _ in self.objects if ds.SOPClassUID == sop_class]

    def with_pixels(self, pixel_data: bytes) -> Dataset:
        (match,) = [ds for _, ds, _ in self.objects if ds.PixelData == pixel_data]
        return match


def export(client: httpx.Client, case_id: int, deidentify: bool, folder: Path) -> Exported:
    response = client.get(
        f"{API}/cases/{case_id}/export.zip", params={"deidentify": str(deidentify).lower()}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == (f'attachment; filename="case-{case_id}.zip"')
    root = folder / ("deidentified" if deidentify else "as-stored")
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        archive.extractall(root)
    assert "DICOMDIR" in names
    fileset = FileSet(root / "DICOMDIR")
    objects = []
    for instance in fileset:
        file_id = Path(instance.path).relative_to(root).as_posix()
        objects.append((file_id, instance.load(), Path(instance.path).read_bytes()))
    # Every file in the zip is the DICOMDIR or an object it references, at a legal path.
    assert sorted(names) == sorted(["DICOMDIR", *(file_id for file_id, _, _ in objects)])
    assert all(FILE_ID.fullmatch(file_id) for file_id, _, _ in objects)
    return Exported(response.content, objects, (root / "DICOMDIR").read_bytes())


def audit_entries(server: Server, action: str) -> list[AuditEntry]:
    engine = make_engine(server.env["RADMATCH_DATABASE_URL"])
    try:
        with session_factory(engine)() as session:
            entries = list(
                session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.action == action)
                    .order_by(AuditEntry.sequence)
                )
            )
            session.expunge_all()
    finally:
        engine.dispose()
    return entries


def private_tags(ds: Dataset) -> list:
    """Every private element's tag, in sequences too."""
    found = []
    ds.walk(lambda _, element: found.append(element.tag) if element.tag.is_private else None)
    return found


def days(value: str) -> int:
    return datetime.strptime(value, "%Y%m%d").date().toordinal()


# ---- A case with two searches and two conclusions ------------------------------------------------


def add_person(client: httpx.Client, ref: str, filename: str, data: bytes, **fields) -> dict:
    person = client.post(f"{API}/people", json={"external_ref": ref})
    assert person.status_code == 201, person.text
    image = client.post(
        f"{API}/people/{person.json()['id']}/images",
        files={"file": (filename, data)},
        data=fields,
    )
    assert image.status_code == 201, image.text
    return {"person_id": person.json()["id"], **image.json()}


def search_in(client: httpx.Client, case_id: int, data: bytes, **fields) -> dict:
    response = client.post(
        f"{API}/cases/{case_id}/searches",
        files={"file": ("query", data)},
        data={"k": 10, **fields},
    )
    assert response.status_code == 200, response.text
    return response.json()


def conclude(client: httpx.Client, case_id: int, search: dict, person_id: int) -> None:
    assert person_id in [c["person_id"] for c in search["candidates"]]
    response = client.post(
        f"{API}/cases/{case_id}/conclusions",
        json={
            "search_id": search["search_id"],
            "person_id": person_id,
            "conclusion": "possible",
            "comment": "trabecular pattern",
        },
    )
    assert response.status_code == 201, response.text


def new_case(client: httpx.Client, number: str) -> int:
    response = client.post(f"{API}/cases", json={"number": number})
    assert response.status_code == 201, response.text
    return response.json()["id"]


@dataclass
class Evidence:
    case_id: int
    dicom_query: bytes
    png_query: bytes
    dicom_image: bytes
    png_image: bytes
    dicom_image_id: int


@pytest.fixture(scope="module")
def evidence(shared_server) -> Evidence:
    """A case whose DICOM query was concluded on against a DICOM gallery image, and whose PNG
    query against a PNG gallery image."""
    dicom_image = identified_dicom(
        1,
        DICOM_PERSON,
        DICOM_ACQUIRED,
        PatientName=DICOM_PERSON_NAME,
        PatientBirthDate=DICOM_PERSON_BIRTH,
    )
    png_image = png_bytes((smooth_pixels(2) * 65535).astype(np.uint16))
    # The mortuary files the unknown person under the case number.
    dicom_query = identified_dicom(
        3,
        CASE_NUMBER,
        QUERY_DATE,
        PatientName=QUERY_NAME,
        PatientBirthDate=QUERY_BIRTH,
        PatientAge="066Y",
    )
    png_query = png_bytes((smooth_pixels(4) * 255).astype(np.uint8))
    with shared_server.examiner() as client:
        dicom_person = add_person(client, DICOM_PERSON, "gallery.dcm", dicom_image)
        png_person = add_person(
            client,
            PNG_PERSON,
            "gallery.png",
            png_image,
            side="R",
            body_part="knee",
            acquisition_date=PNG_ACQUIRED.isoformat(),
            pixel_spacing_mm="0.3",
        )
        case_id = new_case(client, CASE_NUMBER)
        first = search_in(client, case_id, dicom_query)
        conclude(client, case_id, first, dicom_person["person_id"])
        second = search_in(client, case_id, png_query, query_date=PNG_QUERY_DATE.isoformat())
        conclude(client, case_id, second, png_person["person_id"])
        # A second conclusion on the same candidate adds nothing to the export.
        conclude(client, case_id, second, png_person["person_id"])
    return Evidence(case_id, dicom_query, png_query, dicom_image, png_image, dicom_person["id"])


# ---- Exports -----------------------------------------------------------------------------------


def test_an_export_as_stored_holds_the_originals(shared_server, evidence, tmp_path):
    with shared_server.examiner() as client:
        exported = export(client, evidence.case_id, False, tmp_path)
        again = export(client, evidence.case_id, False, tmp_path / "again")
    assert len(exported.objects) == 4
    # DICOM originals go in byte for byte.
    stored = {ds.SOPInstanceUID: data for _, ds, data in exported.objects}
    for original in (evidence.dicom_query, evidence.dicom_image):
        uid = pydicom.dcmread(io.BytesIO(original)).SOPInstanceUID
        assert stored[uid] == original
    # PNGs as Secondary Capture: their pixels, the person or case, the date, side and body part.
    captures = exported.by_sop_class(SecondaryCaptureImageStorage)
    assert len(captures) == 2
    gallery = exported.with_pixels(np.asarray(Image.open(io.BytesIO(evidence.png_image))).tobytes())
    assert (gallery.BitsAllocated, gallery.PhotometricInterpretation) == (16, "MONOCHROME2")
    assert gallery.PatientID == PNG_PERSON and gallery.StudyDate == "20161128"
    assert (gallery.ImageLaterality, gallery.BodyPartExamined) == ("R", "KNEE")
    assert [float(v) for v in gallery.PixelSpacing] == [0.3, 0.3]
    png_query = exported.with_pixels(
        np.asarray(Image.open(io.BytesIO(evidence.png_query))).tobytes()
    )
    assert png_query.BitsAllocated == 8 and png_query.PatientID == CASE_NUMBER
    assert png_query.StudyDate == "20240715"
    np.testing.assert_array_equal(
        png_query.pixel_array, np.asarray(Image.open(io.BytesIO(evidence.png_query)))
    )
    # The same UIDs in every export of the case.
    assert {ds.SOPInstanceUID for _, ds, _ in again.objects} == set(stored)
    # The DICOMDIR names the case's unknown person once, with both queries.
    dicomdir = pydicom.dcmread(io.BytesIO(exported.dicomdir))
    patients = [
        record.PatientID
        for record in dicomdir.DirectoryRecordSequence
        if record.DirectoryRecordType == "PATIENT"
    ]
    assert sorted(patients) == sorted([CASE_NUMBER, DICOM_PERSON, PNG_PERSON])


def test_dcmtk_reads_the_file_set(shared_server, evidence, tmp_path):
    with shared_server.examiner() as client:
        response = client.get(f"{API}/cases/{evidence.case_id}/export.zip?deidentify=true")
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path)
        names = archive.namelist()
    for name in names:
        dumped = subprocess.run(
            ["dcmdump", "-q", str(tmp_path / name)], capture_output=True, text=True
        )
        assert dumped.returncode == 0, (name, dumped.stderr)
        assert subprocess.run(["dcmftest", str(tmp_path / name)]).returncode == 0
    listing = subprocess.run(
        ["dcmdump", "+P", "ReferencedFileID", str(tmp_path / "DICOMDIR")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert listing.count("ReferencedFileID") == len(names) - 1


def test_a_deidentified_export_names_no_one(shared_server, evidence, tmp_path):
    with shared_server.examiner() as client:
        before = export(client, evidence.case_id, False, tmp_path)
        after = export(client, evidence.case_id, True, tmp_path)
    assert len(after.objects) == 4
    identifying = [
        QUERY_NAME,
        QUERY_BIRTH,
        CASE_NUMBER,
        DICOM_PERSON,
        DICOM_PERSON_NAME,
        DICOM_PERSON_BIRTH,
        PNG_PERSON,
        PRIVATE_SECRET,
        "ST ELSEWHERE",
        *(ds.SOPInstanceUID for _, ds, _ in before.objects),
        *(ds.StudyInstanceUID for _, ds, _ in before.objects),
    ]
    contents = [after.dicomdir] + [data for _, _, data in after.objects]
    with zipfile.ZipFile(io.BytesIO(after.data)) as archive:
        contents.append("\n".join(archive.namelist()).encode())
    for text in identifying:
        assert not any(text.encode() in content for content in contents), text
    for _, ds, _ in after.objects:
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        assert "Basic Application Level Confidentiality Profile" in ds.DeidentificationMethod[0]
        codes = {
            (c.CodeValue, c.CodingSchemeDesignator) for c in ds.DeidentificationMethodCodeSequence
        }
        assert codes == {("113100", "DCM"), ("113107", "DCM")}
        assert not private_tags(ds)
        assert "OtherPatientIDs" not in ds and "InstitutionName" not in ds
        assert "PatientAge" not in ds and ds.get("PatientBirthDate", "") == ""
    # The pixels are the originals', so each object is found by them in the export as stored.
    pairs = [(before.with_pixels(ds.PixelData), ds) for _, ds, _ in after.objects]
    # Every date moved back by the same number of days, so the intervals between them hold.
    offsets = {
        days(original.data_element(keyword).value) - days(ds.data_element(keyword).value)
        for original, ds in pairs
        for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
        if original.get(keyword)
    }
    assert len(offsets) == 1 and 62 <= offsets.pop() <= 730
    dicom_query = next(ds for original, ds in pairs if original.get("PatientName") == QUERY_NAME)
    dicom_image = next(ds for original, ds in pairs if original.PatientID == DICOM_PERSON)
    years = (days(dicom_query.StudyDate) - days(dicom_image.StudyDate)) / 365.25
    assert years == pytest.approx((QUERY_DATE - DICOM_ACQUIRED).days / 365.25)
    # One pseudonym per person: both queries are the case's unknown person.
    pseudonyms = {(original.PatientID, ds.PatientID) for original, ds in pairs}
    assert len(pseudonyms) == len({new for _, new in pseudonyms}) == 3
    # The UIDs are new, and differ from one de-identified export to the next.
    with shared_server.examiner() as client:
        later = export(client, evidence.case_id, True, tmp_path / "later")
    assert not {ds.SOPInstanceUID for _, ds, _ in later.objects} & {
        ds.SOPInstanceUID for _, ds, _ in after.objects
    }


def test_each_export_is_audited_and_leaves_no_files(shared_server, evidence, tmp_path):
    with shared_server.examiner() as client:
        exported = export(client, evidence.case_id, True, tmp_path)
    assert not list(Path(tempfile.gettempdir()).glob("radmatch-export-*"))
    entry = audit_entries(shared_server, "case.export")[-1]
    assert (entry.target_type, entry.target_id) == ("case", evidence.case_id)
    assert entry.details == {
        "objects": 4,
        "deidentified": True,
        "sha256": hashlib.sha256(exported.data).hexdigest(),
    }


def test_refusals(shared_server, evidence):
    with shared_server.examiner() as client:
        empty = new_case(client, "2026/EXP-EMPTY")
        nothing = client.get(f"{API}/cases/{empty}/export.zip")
        missing = client.get(f"{API}/cases/987654/export.zip")
        invalid = client.get(f"{API}/cases/{evidence.case_id}/export.zip?deidentify=perhaps")
    assert nothing.status_code == 409
    assert nothing.json()["detail"] == "nothing to export: the case has no conclusions"
    assert missing.status_code == 404 and "no case with id 987654" in missing.text
    assert invalid.status_code == 422
    with shared_server.client() as anonymous:
        assert anonymous.get(f"{API}/cases/{evidence.case_id}/export.zip").status_code == 401
    assert not [e for e in audit_entries(shared_server, "case.export") if e.target_id == empty]


def test_a_blind_reviewer_exports_only_what_they_may_see(shared_server, evidence):
    second_examiner = shared_server.new_key("reviewer in export tests", "examiner")
    with shared_server.examiner() as examiner, shared_server.client(second_examiner) as reviewer:
        case_id = new_case(examiner, "2026/EXP-BLIND")
        search = search_in(examiner, case_id, png_bytes((smooth_pixels(8) * 255).astype(np.uint8)))
        conclude(examiner, case_id, search, search["candidates"][0]["person_id"])
        asked = examiner.post(
            f"{API}/cases/{case_id}/reviews",
            json={
                "search_id": search["search_id"],
                "reviewer_key_id": reviewer.get(f"{API}/me").json()["id"],
            },
        )
        assert asked.status_code == 201, asked.text
        blind = reviewer.get(f"{API}/cases/{case_id}/export.zip")
        seen = examiner.get(f"{API}/cases/{case_id}/export.zip")
    assert blind.status_code == 409
    assert blind.json()["detail"] == (
        "nothing to export: the case has no conclusions you may see yet "
        "(hidden until you record your blind review: 1)"
    )
    assert seen.status_code == 200


def test_burned_in_annotation_is_refused_when_deidentifying(shared_server, evidence):
    annotated = identified_dicom(
        5, "2026/EXP-BURNED", QUERY_DATE, PatientName="LABELLED^FILM", BurnedInAnnotation="YES"
    )
    with shared_server.examiner() as client:
        case_id = new_case(client, "2026/EXP-BURNED")
        search = search_in(client, case_id, annotated)
        conclude(client, case_id, search, search["candidates"][0]["person_id"])
        refused = client.get(f"{API}/cases/{case_id}/export.zip?deidentify=true")
        as_stored = client.get(f"{API}/cases/{case_id}/export.zip?deidentify=false")
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(
        f"the query of search {search['search_id']} has burned-in annotation"
    )
    assert as_stored.status_code == 200


def test_a_purged_original_is_named(shared_server, evidence):
    with shared_server.examiner() as client:
        person = add_person(
            client, "EXP-PURGED", "purged.png", png_bytes((smooth_pixels(6) * 255).astype(np.uint8))
        )
        case_id = new_case(client, "2026/EXP-PURGED")
        search = search_in(client, case_id, png_bytes((smooth_pixels(7) * 255).astype(np.uint8)))
        conclude(client, case_id, search, person["person_id"])
    with shared_server.admin() as admin:
        deleted = admin.delete(
            f"{API}/images/{person['id']}", params={"reason": "withdrawn consent", "purge": True}
        )
        assert deleted.status_code == 200, deleted.text
    with shared_server.examiner() as client:
        gone = client.get(f"{API}/cases/{case_id}/export.zip")
    assert gone.status_code == 410
    assert f"image {person['id']}" in gone.json()["detail"]


# ---- The case page -------------------------------------------------------------------------------


@pytest.mark.parametrize("module_database_url", ["sqlite"], indirect=True)
def test_the_case_page_downloads_the_export(shared_server, evidence, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(accept_downloads=True)
        page.set_default_timeout(15_000)
        page.goto(shared_server.url)
        page.get_by_label("API key").fill(shared_server.examiner_key)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Sign out").wait_for()
        page.goto(f"{shared_server.url}/#/cases/{evidence.case_id}")
        deidentify = page.get_by_label("de-identify")
        assert deidentify.is_checked()
        downloads = []
        for ticked in (True, False):
            deidentify.set_checked(ticked)
            with page.expect_download() as started:
                page.get_by_role("button", name="Export DICOM").click()
            saved_to = tmp_path / f"export-{ticked}.zip"
            started.value.save_as(saved_to)
            downloads.append((started.value.suggested_filename, saved_to.read_bytes()))
        browser.close()
    for (filename, data), ticked in zip(downloads, (True, False), strict=True):
        assert filename == f"case-{evidence.case_id}.zip"
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            query = [
                pydicom.dcmread(io.BytesIO(archive.read(name)))
                for name in archive.namelist()
                if name != "DICOMDIR"
            ]
        assert len(query) == 4
        assert all((ds.get("PatientIdentityRemoved") == "YES") == ticked for ds in query)
