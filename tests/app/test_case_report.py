"""The case report PDF through a real server, on SQLite and PostgreSQL: what an identification
board reads in it (pdftotext), that it renders (pdftoppm), the audit entry it leaves naming the
chain's head it printed, what a blind reviewer's report leaves out, and the case page's button.

Two models: the test suite's, whose checkpoint carries a calibration, so that its searches carry
evidence and an open-set answer, and the same network without it, whose searches carry neither.
With RADMATCH_SCREENSHOTS=1 the first page of a report is written to docs/screenshots/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy import select

from app.storage.database import make_engine, session_factory
from app.storage.originals import OriginalStore
from app.storage.tables import AuditEntry
from model.checkpoint import load_checkpoint, save_checkpoint
from tests.app.test_cases import conclude as post_conclusion
from tests.support.servers import Server, new_server
from training.cohorts import read_knee_manifest
from training.records import ImageRecord

API = "/api/v1"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Every acquisition is dated from this day on, visit_months later: years between are known.
FIRST_VISIT = "2019-03-04"
FOOTER = re.compile(r"radmatch case report · case .* · generated [^\n]* UTC\s+page \d+")


# ---- Models and servers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uncalibrated_checkpoint(checkpoint, tmp_path_factory) -> Path:
    """The suite's model with its calibration taken out: searches without evidence."""
    path = tmp_path_factory.mktemp("uncalibrated") / "checkpoint.pt"
    loaded = load_checkpoint(checkpoint)
    info = {k: v for k, v in loaded.info.items() if k != "calibration"}
    save_checkpoint(path, loaded.embedder, loaded.preprocessing, **info)
    return path


@pytest.fixture(scope="module")
def calibrated(shared_server, checkpoint) -> Server:
    """The suite's shared server: its model's checkpoint carries a calibration."""
    assert "calibration" in load_checkpoint(checkpoint).info
    return shared_server


@pytest.fixture(scope="module")
def uncalibrated(uncalibrated_checkpoint, tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("uncalibrated-server")
    running = new_server(root, f"sqlite:///{root / 'radmatch.db'}", uncalibrated_checkpoint)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def baselines(phantom_manifest) -> list[ImageRecord]:
    """Each person's baseline right knee."""
    records = read_knee_manifest(phantom_manifest)
    return sorted(
        (r for r in records if r.visit_months == 0 and r.side == "R"), key=lambda r: r.person_id
    )


@pytest.fixture(scope="module")
def follow_up(phantom_manifest) -> ImageRecord:
    """A later visit of one person: bytes that no gallery image has."""
    records = read_knee_manifest(phantom_manifest)
    return max((r for r in records if r.side == "R"), key=lambda r: (r.visit_months, r.person_id))


def put_gallery(server: Server, records: list[ImageRecord]) -> None:
    with server.examiner() as client:
        for record in records:
            person = client.post(f"{API}/people", json={"external_ref": record.person_id})
            assert person.status_code == 201, person.text
            response = client.post(
                f"{API}/people/{person.json()['id']}/images",
                files={"file": (record.path.name, record.path.read_bytes(), "image/png")},
                data={
                    "side": record.side,
                    "body_part": "knee",
                    "acquisition_date": FIRST_VISIT,
                    "visit_months": record.visit_months,
                    "pixel_spacing_mm": record.pixel_spacing_mm,
                },
            )
            assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def calibrated_gallery(calibrated, baselines) -> Server:
    put_gallery(calibrated, baselines)
    return calibrated


@pytest.fixture(scope="module")
def uncalibrated_gallery(uncalibrated, baselines) -> Server:
    put_gallery(uncalibrated, baselines)
    return uncalibrated


# ---- Cases over HTTP, and reading the PDF -------------------------------------------------------


def open_case(client: httpx.Client, number: str, **fields) -> dict:
    response = client.post(f"{API}/cases", json={"number": number, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def case_search(client: httpx.Client, case_id: int, record: ImageRecord, **fields) -> dict:
    response = client.post(
        f"{API}/cases/{case_id}/searches",
        files={"file": ("query.png", record.path.read_bytes())},
        data={"k": 3, "pixel_spacing_mm": record.pixel_spacing_mm, **fields},
    )
    assert response.status_code == 200, response.text
    return response.json()


def conclude(client: httpx.Client, case_id: int, search: dict, conclusion: str, comment: str):
    response = post_conclusion(client, case_id, search, conclusion, comment)
    assert response.status_code == 201, response.text
    return response.json()


def report(client: httpx.Client, case_id: int) -> bytes:
    response = client.get(f"{API}/cases/{case_id}/report.pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    return response.content


def pdf_text(pdf: bytes, folder: Path) -> str:
    """The PDF's text without the page footers, with all runs of white space as one space, so
    that a phrase the layout wrapped, or broke across pages, still reads as one."""
    path = folder / "report.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(
        ["pdftotext", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout
    pages = text.split("\f")
    assert all(FOOTER.search(page) for page in pages if page.strip())
    return " ".join(" ".join(FOOTER.sub(" ", page).split()) for page in pages).strip()


def render_first_page(pdf: bytes, folder: Path, resolution: int) -> Path:
    source = folder / "render.pdf"
    source.write_bytes(pdf)
    command = ["pdftoppm", "-png", "-r", str(resolution), "-f", "1", "-l", "1", "-singlefile"]
    subprocess.run([*command, str(source), str(folder / "page-1")], check=True)
    page = folder / "page-1.png"
    assert page.read_bytes().startswith(b"\x89PNG")
    return page


def audit_chain(server: Server) -> list[AuditEntry]:
    """Every audit entry, in chain order."""
    engine = make_engine(server.env["RADMATCH_DATABASE_URL"])
    try:
        with session_factory(engine)() as session:
            entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.sequence)))
            session.expunge_all()
    finally:
        engine.dispose()
    return entries


def about_case(entry: AuditEntry, case_id: int, search_ids: list[int]) -> bool:
    return (entry.target_type, entry.target_id) == ("case", case_id) or (
        entry.target_type == "search" and entry.target_id in search_ids
    )


# ---- The report --------------------------------------------------------------------------------


def test_a_report_holds_what_the_board_needs(calibrated_gallery, baselines, tmp_path, request):
    """Case, search, evidence, open-set answer, the signed conclusion and the audit chain's
    hashes; and an audit entry of its own that names the hashes it printed."""
    query = baselines[3]
    with calibrated_gallery.examiner() as client:
        case = open_case(client, "2026/RPT-001", description="Right knee, found near the river")
        search = case_search(client, case["id"], query, query_date="2020-09-04")
        marked = {
            "search_id": search["search_id"],
            "person_id": search["candidates"][0]["person_id"],
            "conclusion": "probable",
            "comment": "Trabecular pattern agrees",
            "candidate_image_id": search["candidates"][0]["images"][0]["image_id"],
            "marks": [
                {
                    "number": 1,
                    "label": "bone island",
                    "query": {"x": 20, "y": 30},
                    "candidate": {"x": 22, "y": 31},
                }
            ],
            "measurements": [
                {
                    "image": "query",
                    "kind": "distance",
                    "points": [{"x": 0, "y": 0}, {"x": 30, "y": 40}],
                }
            ],
        }
        response = client.post(f"{API}/cases/{case['id']}/conclusions", json=marked)
        assert response.status_code == 201, response.text
        measured = response.json()["measurements"][0]
        other = open_case(client, "2026/RPT-001b")  # an entry about something else
        pdf = report(client, case["id"])
        disposition = client.get(f"{API}/cases/{case['id']}/report.pdf").headers
    assert disposition["content-disposition"] == (
        'attachment; filename="case-2026_RPT-001-report.pdf"'
    )
    # The calibrated model weighs every candidate and answers the open-set question.
    first = search["candidates"][0]
    assert first["external_ref"] == query.person_id
    assert all(c["evidence"] is not None for c in search["candidates"])
    assert first["evidence"]["years_between"] == pytest.approx(1.5, abs=0.02)
    assert search["open_set"] is not None and search["calibration"] is not None

    text = pdf_text(pdf, tmp_path)
    assert "Case report: 2026/RPT-001" in text and "Right knee, found near the river" in text
    assert search["query_sha256"] in text
    assert f"Calibration #{search['calibration']['id']} (logistic)" in text
    assert "Embedded on cpu, fp32, by onnxruntime" in text
    for candidate in search["candidates"]:
        evidence = candidate["evidence"]
        assert f"Rank {candidate['rank']}, {candidate['external_ref']}: likelihood ratio" in text
        assert f"log10 LR {evidence['log10_lr']:.2f}" in text
        assert evidence["verbal"] in text
    assert "no calibration for this model version" not in text
    assert f"Open-set decision: {search['open_set']['decision']}" in text
    assert f"(p_in_gallery) {search['open_set']['p_in_gallery']:.3f}" in text
    assert " ".join(search["open_set"]["statement"].split()) in text
    assert "probable" in text and "Trabecular pattern agrees" in text
    assert "1 bone island (20, 30) (22, 31)" in text
    assert measured["unit"] == "mm"
    assert measured["value"] == pytest.approx(50 * measured["pixel_spacing_mm"], abs=1e-3)
    assert f"query distance {measured['value']:g} mm (0, 0), (30, 40)" in text
    assert "examiner in tests" in text
    assert "Validation of the calibrations" in text and "Cllr" in text
    assert f"calibration #{search['calibration']['id']} (logistic, current)" in text

    chain = {entry.sequence: entry for entry in audit_chain(calibrated_gallery)}
    ours = [e for e in chain.values() if about_case(e, case["id"], [search["search_id"]])]
    # The last entry about the case before the report, and the chain's head (another case's).
    assert [e.action for e in ours[-3:]] == ["case.conclusion", "case.report", "case.report"]
    conclusion, printed = ours[-3], ours[-2]
    head = chain[printed.sequence - 1]
    assert (head.action, head.target_id) == ("case.create", other["id"])
    assert printed.details == {
        "case_sequence": conclusion.sequence,
        "case_entry_hash": conclusion.entry_hash,
        "chain_sequence": head.sequence,
        "chain_head_hash": head.entry_hash,
    }
    assert conclusion.entry_hash in text and head.entry_hash in text
    assert f"sequence {conclusion.sequence}: case.conclusion" in text
    # The second report names the first as the case's latest entry.
    assert ours[-1].details["case_entry_hash"] == printed.entry_hash

    page = render_first_page(pdf, tmp_path, 60)
    assert page.stat().st_size > 5_000
    database = request.node.callspec.params["module_database_url"]
    if os.environ.get("RADMATCH_SCREENSHOTS") == "1" and database == "sqlite":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(render_first_page(pdf, tmp_path, 80), SCREENSHOTS / "case-report.png")


def test_without_a_calibration_the_report_says_so(uncalibrated_gallery, baselines, tmp_path):
    query = baselines[5]
    with uncalibrated_gallery.examiner() as client:
        case = open_case(client, "2026-RPT-002")
        search = case_search(client, case["id"], query)
        assert all(c["evidence"] is None for c in search["candidates"])
        assert search["open_set"] is None
        text = pdf_text(report(client, case["id"]), tmp_path)
    for candidate in search["candidates"]:
        assert f"{candidate['external_ref']} (person {candidate['person_id']})" in text
    assert "Calibration no calibration for this model version" in text
    assert "No open-set answer: no calibration for this model version." in text
    assert "likelihood ratio" in text  # the introduction says what the evidence would be
    assert "Open-set decision" not in text and "Verbal scale" not in text
    assert (
        "No likelihood ratios: no calibration for this model version when this search ran" in text
    )
    assert "no calibration for this model version: its searches carry no likelihood ratios" in text
    assert "No conclusions recorded." in text


def test_a_blind_reviewer_sees_no_one_elses_conclusion_in_the_report(
    calibrated_gallery, baselines, tmp_path
):
    """The reviewer's report leaves out others' conclusions and shows the case as it was when
    the review was asked; afterwards, what they recorded blind is marked so."""
    query = baselines[1]
    reviewer_key = calibrated_gallery.new_key("reviewer in report tests", "examiner")
    with (
        calibrated_gallery.examiner() as examiner,
        calibrated_gallery.client(reviewer_key) as reviewer,
    ):
        case = open_case(examiner, "2026-RPT-003", description="Found on the shore")
        search = case_search(examiner, case["id"], query)
        conclude(examiner, case["id"], search, "identification", "First reading, before the review")
        response = examiner.post(
            f"{API}/cases/{case['id']}/reviews",
            json={
                "search_id": search["search_id"],
                "reviewer_key_id": reviewer.get(f"{API}/me").json()["id"],
            },
        )
        assert response.status_code == 201, response.text
        examiner.patch(
            f"{API}/cases/{case['id']}",
            json={"status": "identified", "description": "Named by the first reading"},
        )
        blind = pdf_text(report(reviewer, case["id"]), tmp_path)
        conclude(reviewer, case["id"], search, "probable", "Second reading")
        seen = pdf_text(report(reviewer, case["id"]), tmp_path)
    assert "First reading" not in blind and "1 conclusion(s) by other examiners" in blind
    assert f"search #{search['search_id']}" in blind and "awaiting their conclusion" in blind
    assert "Found on the shore" in blind and "Named by the first reading" not in blind
    assert "Status open" in blind and "Status identified" not in blind
    assert "First reading" in seen and "Second reading" in seen
    assert "reviewer in report tests" in seen and "probable (blind)" in seen
    assert "Named by the first reading" in seen and "Status identified" in seen
    assert "awaiting their conclusion" not in seen


def test_a_query_original_that_is_gone_is_noted(calibrated_gallery, follow_up, tmp_path):
    with calibrated_gallery.examiner() as client:
        case = open_case(client, "2026-RPT-004")
        search = case_search(client, case["id"], follow_up)
        store = OriginalStore(Path(calibrated_gallery.env["RADMATCH_DATA_DIR"]) / "originals")
        store.remove(search["query_sha256"])
        text = pdf_text(report(client, case["id"]), tmp_path)
    assert "The query original is no longer stored: no thumbnail." in text
    assert f"Search #{search['search_id']}" in text


def test_refusals(calibrated, tmp_path):
    with calibrated.examiner() as client:
        missing = client.get(f"{API}/cases/987654/report.pdf")
        case = open_case(client, "2026-RPT-005")
    assert missing.status_code == 404 and "no case with id 987654" in missing.text
    with calibrated.client() as anonymous:
        assert anonymous.get(f"{API}/cases/{case['id']}/report.pdf").status_code == 401
    with calibrated.client("rm_not-a-key") as stranger:
        assert stranger.get(f"{API}/cases/{case['id']}/report.pdf").status_code == 401
    with calibrated.admin() as admin:  # either role may print it; an empty case prints too
        text = pdf_text(report(admin, case["id"]), tmp_path)
    assert "No searches were run in this case." in text


# ---- The case page's button --------------------------------------------------------------------


@pytest.mark.parametrize("module_database_url", ["sqlite"], indirect=True)
def test_the_case_page_downloads_the_report(calibrated_gallery, baselines, tmp_path):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with calibrated_gallery.examiner() as client:
        case = open_case(client, "2026/RPT 006")
        case_search(client, case["id"], baselines[2])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(accept_downloads=True)
        page.set_default_timeout(15_000)
        page.goto(calibrated_gallery.url)
        page.get_by_label("API key").fill(calibrated_gallery.examiner_key)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Sign out").wait_for()
        page.goto(f"{calibrated_gallery.url}/#/cases/{case['id']}")
        button = page.get_by_role("button", name="Report (PDF)")
        with page.expect_download() as started:
            button.click()
        download = started.value
        saved = tmp_path / "downloaded.pdf"
        download.save_as(saved)
        browser.close()
    assert download.suggested_filename == "case-2026_RPT_006-report.pdf"
    assert re.fullmatch(r"blob:.*", download.url)
    assert "Case report: 2026/RPT 006" in pdf_text(saved.read_bytes(), tmp_path)
