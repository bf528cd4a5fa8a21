"""Evidence on a real `radmatch serve` process, on SQLite and PostgreSQL: each candidate's
likelihood ratio from the model version's calibration, the open-set answer, both stored with the
search and reproduced by its re-run; the admin's calibration, validation report and refit."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.support.servers import WorkerProcess, seeded_checkpoint
from training.cohorts import read_knee_manifest
from training.records import ImageRecord

API = "/api/v1"
FIRST_VISIT = date(2016, 3, 1)


def visit_date(record: ImageRecord) -> date:
    return FIRST_VISIT + timedelta(days=round(record.visit_months * 30.4375))


@pytest.fixture(scope="module")
def cohort(phantom_manifest) -> list[ImageRecord]:
    return read_knee_manifest(phantom_manifest)


@pytest.fixture(scope="module")
def gallery(shared_server, cohort) -> dict[str, int]:
    """Four people's first-visit knees, dated; their refs -> person ids."""
    refs: dict[str, int] = {}
    with shared_server.examiner() as client:
        for record in cohort:
            if record.visit_months != 0 or (len(refs) == 4 and record.person_id not in refs):
                continue
            if record.person_id not in refs:
                response = client.post(f"{API}/people", json={"external_ref": record.person_id})
                refs[record.person_id] = response.json()["id"]
            response = client.post(
                f"{API}/people/{refs[record.person_id]}/images",
                files={"file": ("knee.png", record.path.read_bytes())},
                data={
                    "side": record.side,
                    "pixel_spacing_mm": record.pixel_spacing_mm,
                    "acquisition_date": visit_date(record).isoformat(),
                },
            )
            assert response.status_code == 201, response.text
    return refs


def follow_up(cohort, gallery, months: float) -> ImageRecord:
    return next(r for r in cohort if r.person_id in gallery and r.visit_months == months)


def search(client, record: ImageRecord, path: str = "/search", **form) -> dict:
    response = client.post(
        f"{API}{path}",
        files={"file": ("query.png", record.path.read_bytes())},
        data={"pixel_spacing_mm": record.pixel_spacing_mm, **form},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_every_candidate_carries_bounded_evidence_from_the_calibration(
    shared_server, cohort, gallery
):
    query = follow_up(cohort, gallery, 48)
    with shared_server.examiner() as client:
        answer = search(client, query, k=4, query_date=visit_date(query).isoformat())
    calibration = answer["calibration"]
    assert calibration["method"] == "logistic" and calibration["model_version_id"] == 1
    assert answer["query_date"] == visit_date(query).isoformat()
    assert len(answer["candidates"]) == 4
    for candidate in answer["candidates"]:
        evidence = candidate["evidence"]
        assert evidence["calibration_id"] == calibration["id"]
        low, high = evidence["elub"]
        assert low <= evidence["log10_lr"] <= high
        assert evidence["bounded"] == (evidence["log10_lr"] in (low, high))
        assert evidence["lr"] == pytest.approx(10 ** evidence["log10_lr"])
        assert evidence["years_between"] == pytest.approx(4.0, abs=0.01)
        assert evidence["band"] in ("4-7 years", "pooled")
        assert (evidence["note"] is None) == (evidence["band"] != "pooled")
    # The same curve for everyone at the same interval: LR orders as similarity does.
    log10_lrs = [c["evidence"]["log10_lr"] for c in answer["candidates"]]
    assert log10_lrs == sorted(log10_lrs, reverse=True)


def test_the_open_set_answer_covers_the_whole_gallery(shared_server, cohort, gallery):
    query = follow_up(cohort, gallery, 24)
    with shared_server.examiner() as client:
        answer = search(client, query, k=2, query_date=visit_date(query).isoformat())
    open_set = answer["open_set"]
    assert open_set["prior"] == 0.5 and open_set["prior_source"] == "default"
    assert open_set["gallery_people"] >= 4
    assert open_set["people_beyond_candidates"] == open_set["gallery_people"] - 2
    assert open_set["beyond_log10_lr"] >= answer["candidates"][-1]["evidence"]["log10_lr"]
    assert 0 <= open_set["p_top_candidate"] <= open_set["p_in_gallery"] <= 1
    assert open_set["decision"] in (
        "candidate supported",
        "inconclusive",
        "probably not in the gallery",
    )
    assert open_set["thresholds"] == {"candidate_supported": 0.9, "probably_not_in_gallery": 0.1}


def test_a_query_without_a_date_uses_the_pooled_calibration_and_says_so(
    shared_server, cohort, gallery
):
    with shared_server.examiner() as client:
        answer = search(client, follow_up(cohort, gallery, 12), k=2)
    assert answer["query_date"] is None
    for candidate in answer["candidates"]:
        evidence = candidate["evidence"]
        assert evidence["years_between"] is None and evidence["band"] == "pooled"
        assert "query's date is unknown" in evidence["note"]


def test_the_stored_search_and_its_rerun_give_the_same_evidence(shared_server, cohort, gallery):
    query = follow_up(cohort, gallery, 72)
    with shared_server.examiner() as client:
        answer = search(client, query, k=3, query_date=visit_date(query).isoformat(), prior=0.3)
        stored = client.get(f"{API}/searches/{answer['search_id']}").json()
        rerun = client.post(f"{API}/searches/{answer['search_id']}/rerun").json()
    assert stored == answer
    assert answer["open_set"]["prior"] == 0.3 and answer["open_set"]["prior_source"] == "request"
    at_original = rerun["at_original"]
    assert at_original["identical"] is True, at_original["differences"]
    assert at_original["evidence_identical"] is True
    assert at_original["open_set"] == answer["open_set"]
    assert [c["evidence"] for c in at_original["candidates"]] == [
        c["evidence"] for c in answer["candidates"]
    ]


def test_a_case_prior_applies_unless_the_search_gives_its_own(shared_server, cohort, gallery):
    query = follow_up(cohort, gallery, 36)
    with shared_server.examiner() as client:
        case = client.post(f"{API}/cases", json={"number": "EV-1", "prior_in_gallery": 0.2})
        assert case.status_code == 201, case.text
        assert case.json()["prior_in_gallery"] == 0.2
        path = f"/cases/{case.json()['id']}/searches"
        in_case = search(client, query, path, k=2)
        own = search(client, query, path, k=2, prior=0.7)
        refused = client.post(
            f"{API}/search",
            files={"file": ("query.png", query.path.read_bytes())},
            data={"prior": "1"},
        )
        bad_case = client.post(f"{API}/cases", json={"number": "EV-2", "prior_in_gallery": 0})
    assert (in_case["open_set"]["prior"], in_case["open_set"]["prior_source"]) == (0.2, "case")
    assert (own["open_set"]["prior"], own["open_set"]["prior_source"]) == (0.7, "request")
    assert refused.status_code == 422 and "prior" in refused.text
    assert bad_case.status_code == 422


def test_the_admin_sees_the_calibration_and_its_validation(shared_server, gallery):
    with shared_server.admin() as client:
        models = client.get(f"{API}/admin/models").json()
        validation = client.get(f"{API}/admin/models/1/validation")
        plots = {
            name: client.get(url.removeprefix(shared_server.url))
            for name, url in validation.json()["plots"].items()
        }
        unknown = client.get(f"{API}/admin/models/1/validation/roc.png")
        missing = client.get(f"{API}/admin/models/99/validation")
    calibration = models[0]["calibration"]
    assert calibration["source"]["kind"] == "manifest" and calibration["source"]["people"] == 6
    assert calibration["curves"][0]["label"] == "pooled"
    assert calibration["curves"][0]["same_pairs"] > 0
    assert validation.status_code == 200, validation.text
    report = validation.json()["report"]
    for key in ("cllr", "cllr_min", "cllr_cal", "eer", "elub", "misleading", "bands"):
        assert key in report
    assert report["cllr_min"] <= report["cllr"] + 1e-9
    assert sorted(plots) == ["ece", "pav", "scores", "tippett"]
    for response in plots.values():
        assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    assert unknown.status_code == 422 and missing.status_code == 404


def test_an_uncalibrated_version_answers_without_evidence_until_a_refit(
    shared_server, tmp_path, cohort, gallery, calibration_manifest
):
    """A checkpoint without a calibration registers; its validation is 404 and says how to fit
    one; the refit job fits one on a manifest, stored as the version's calibration."""
    models = Path(shared_server.env["RADMATCH_DATA_DIR"]) / "models"  # where the API registers from
    models.mkdir(exist_ok=True)
    checkpoint = seeded_checkpoint(models / "plain.pt")
    with shared_server.admin() as admin:
        version = admin.post(f"{API}/admin/models", json={"checkpoint_path": str(checkpoint)})
        assert version.status_code == 201, version.text
        version_id = version.json()["id"]
        assert version.json()["calibration"] is None
        missing = admin.get(f"{API}/admin/models/{version_id}/validation")
        job = admin.post(
            f"{API}/admin/models/{version_id}/calibrations",
            json={"manifest": str(calibration_manifest), "method": "kde"},
        )
        no_file = admin.post(
            f"{API}/admin/models/{version_id}/calibrations", json={"manifest": "/nonexistent"}
        )
    assert missing.status_code == 404 and "calibrations" in missing.json()["detail"]
    assert job.status_code == 202, job.text
    assert no_file.status_code == 422
    worker = WorkerProcess(shared_server.env, tmp_path / "worker.log", once=True).start()
    try:
        result = shared_server.wait_for_job(job.json()["id"])["result"]
    finally:
        worker.stop()
    with shared_server.admin() as admin:
        refitted = admin.get(f"{API}/admin/models/{version_id}/validation").json()
    assert refitted["calibration"]["id"] == result["calibration_id"]
    assert refitted["calibration"]["method"] == "kde"
