"""Cases through a real server, on SQLite and PostgreSQL: searches kept with a case, signed
conclusions that are never overwritten, blind review, and the case's audit trail.

The tests share one server on each database, with one gallery, and each opens cases of its own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from app.storage.database import make_engine, session_factory
from app.storage.tables import AuditEntry
from training.cohorts import read_knee_manifest
from training.records import ImageRecord

API = "/api/v1"


@pytest.fixture(scope="module")
def baselines(phantom_manifest) -> list[ImageRecord]:
    """Three people's baseline right knees."""
    records = read_knee_manifest(phantom_manifest)
    chosen = [r for r in records if r.visit_months == 0 and r.side == "R"]
    return chosen[:3]


@pytest.fixture(scope="module")
def people(examiner, baselines) -> dict[str, int]:
    """The gallery: the three people and their knees, by reference."""
    return add_gallery(examiner, baselines)


@pytest.fixture(scope="module")
def query(baselines) -> ImageRecord:
    """The same bytes as a gallery image: the one search the untrained test model must rank
    right."""
    return baselines[1]


# A client costs tens of milliseconds to make (its TLS context): one each for the module.
@pytest.fixture(scope="module")
def examiner(shared_server) -> Iterator[httpx.Client]:
    with shared_server.examiner() as client:
        yield client


@pytest.fixture(scope="module")
def admin(shared_server) -> Iterator[httpx.Client]:
    with shared_server.admin() as client:
        yield client


def add_gallery(client, records) -> dict[str, int]:
    people = {}
    for record in records:
        person = client.post(f"{API}/people", json={"external_ref": record.person_id}).json()
        response = client.post(
            f"{API}/people/{person['id']}/images",
            files={"file": ("knee.png", record.path.read_bytes())},
            data={"pixel_spacing_mm": record.pixel_spacing_mm},
        )
        assert response.status_code == 201, response.text
        people[record.person_id] = person["id"]
    return people


def open_case(client: httpx.Client, number: str, **fields) -> dict:
    response = client.post(f"{API}/cases", json={"number": number, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def case_search(client: httpx.Client, case_id: int, record: ImageRecord) -> dict:
    response = client.post(
        f"{API}/cases/{case_id}/searches",
        files={"file": ("query.png", record.path.read_bytes())},
        data={"k": 3, "pixel_spacing_mm": record.pixel_spacing_mm},
    )
    assert response.status_code == 200, response.text
    return response.json()


def conclude(client: httpx.Client, case_id: int, search: dict, conclusion: str, comment: str):
    body = {
        "search_id": search["search_id"],
        "person_id": search["candidates"][0]["person_id"],
        "conclusion": conclusion,
        "comment": comment,
    }
    return client.post(f"{API}/cases/{case_id}/conclusions", json=body)


def request_review(client: httpx.Client, case_id: int, search: dict, reviewer_key_id: int):
    return client.post(
        f"{API}/cases/{case_id}/reviews",
        json={"search_id": search["search_id"], "reviewer_key_id": reviewer_key_id},
    )


def test_who_is_calling_and_the_limits(examiner, admin):
    me = examiner.get(f"{API}/me").json()
    admin_me = admin.get(f"{API}/me").json()
    assert me["role"] == "examiner" and admin_me["role"] == "admin"
    assert {k["id"] for k in examiner.get(f"{API}/examiners").json()} == {me["id"], admin_me["id"]}
    limits = examiner.get(f"{API}/limits").json()
    assert limits["max_search_k"] == 100 and limits["max_upload_bytes"] == 256 * 2**20


def test_a_case_opens_and_its_number_is_unique(examiner):
    response = examiner.post(f"{API}/cases", json={"number": "2026-016", "description": "knee"})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "open"
    duplicate = examiner.post(f"{API}/cases", json={"number": "2026-016"})
    assert duplicate.status_code == 409 and "2026-016" in duplicate.text


def test_a_case_search_keeps_its_query_and_where_people_appeared(examiner, people, query):
    case = open_case(examiner, "2026-017", description="knee")
    search = case_search(examiner, case["id"], query)
    assert search["case_id"] == case["id"]
    first = search["candidates"][0]
    assert first["person_id"] == people[query.person_id]
    assert examiner.get(f"{API}/searches/{search['search_id']}/query").content == (
        query.path.read_bytes()
    )
    preview = examiner.get(f"{API}/searches/{search['search_id']}/query/preview.png?size=64")
    assert preview.headers["content-type"] == "image/png" and preview.content[:4] == b"\x89PNG"
    appearances = examiner.get(f"{API}/people/{first['person_id']}/searches").json()
    assert appearances[0] | {"created_at": None} == {
        "search_id": search["search_id"],
        "case_id": case["id"],
        "case_number": "2026-017",
        "created_at": None,
        "rank": 1,
        "similarity": pytest.approx(first["similarity"]),
    }


def test_conclusions_that_do_not_fit_are_refused(examiner, people, query):
    case = open_case(examiner, "2026-018")
    other_case = open_case(examiner, "2026-019")
    search = case_search(examiner, case["id"], query)
    conclusions = f"{API}/cases/{case['id']}/conclusions"
    body = {"search_id": search["search_id"], "person_id": search["candidates"][0]["person_id"]}
    for bad, status in (
        ({**body, "conclusion": "certain"}, 422),
        ({**body, "person_id": 999999, "conclusion": "possible"}, 422),
        ({**body, "search_id": 999999, "conclusion": "possible"}, 422),
    ):
        assert examiner.post(conclusions, json=bad).status_code == status
    wrong_case = examiner.post(
        f"{API}/cases/{other_case['id']}/conclusions", json={**body, "conclusion": "possible"}
    )
    assert wrong_case.status_code == 422 and "was not run in case" in wrong_case.text


def test_conclusions_are_signed_and_never_overwritten(examiner, people, query):
    case = open_case(examiner, "2026-020")
    search = case_search(examiner, case["id"], query)
    response = conclude(examiner, case["id"], search, "possible", "first")
    assert response.status_code == 201, response.text
    assert response.json()["examiner"] == "examiner in tests"
    conclude(examiner, case["id"], search, "probable", "on reflection")
    history = examiner.get(f"{API}/cases/{case['id']}").json()["conclusions"]
    assert [c["conclusion"] for c in history["items"]] == ["possible", "probable"]  # both kept


def test_a_blind_review(examiner, admin, people, query):
    """The reviewer sees the case's searches but not its conclusions until they record their own;
    no one reviews their own work."""
    case = open_case(examiner, "2026-021")
    search = case_search(examiner, case["id"], query)
    for conclusion in ("possible", "probable"):
        response = conclude(examiner, case["id"], search, conclusion, "before the review")
        assert response.status_code == 201, response.text
    me = examiner.get(f"{API}/me").json()
    admin_me = admin.get(f"{API}/me").json()

    assert request_review(examiner, case["id"], search, me["id"]).status_code == 422
    response = request_review(examiner, case["id"], search, admin_me["id"])
    assert response.status_code == 201, response.text

    blind = admin.get(f"{API}/cases/{case['id']}").json()
    assert blind["conclusions"]["items"] == []
    assert blind["conclusions"]["hidden"] == 2
    assert blind["conclusions"]["blind_searches"] == [search["search_id"]]
    assert blind["searches"][0]["candidates"] == search["candidates"]  # the candidates, not them
    conclude(admin, case["id"], search, "identification", "review")
    seen = admin.get(f"{API}/cases/{case['id']}").json()
    assert [c["examiner"] for c in seen["conclusions"]["items"]] == [
        "examiner in tests",
        "examiner in tests",
        "admin in tests",
    ]
    assert seen["conclusions"]["hidden"] == 0
    assert seen["reviews"][0]["completed_at"] is not None
    assert (seen["reviews"][0]["reviewer"], seen["reviews"][0]["requested_by"]) == (
        "admin in tests",
        "examiner in tests",
    )


def test_a_case_status(examiner):
    case = open_case(examiner, "2026-022")
    response = examiner.patch(f"{API}/cases/{case['id']}", json={"status": "identified"})
    assert response.status_code == 200 and response.json()["status"] == "identified"
    assert examiner.patch(f"{API}/cases/{case['id']}", json={"status": "solved"}).status_code == 422
    listed = examiner.get(f"{API}/cases", params={"status": "identified"}).json()
    assert [c["number"] for c in listed["items"]] == ["2026-022"]
    assert examiner.get(f"{API}/cases/999999").status_code == 404


def test_every_change_to_a_case_is_in_its_audit_trail(
    shared_server, examiner, admin, people, query
):
    case = open_case(examiner, "2026-023")
    search = case_search(examiner, case["id"], query)
    for conclusion in ("possible", "probable"):
        assert conclude(examiner, case["id"], search, conclusion, "").status_code == 201
    admin_me = admin.get(f"{API}/me").json()
    assert request_review(examiner, case["id"], search, admin_me["id"]).status_code == 201
    assert conclude(admin, case["id"], search, "identification", "review").status_code == 201
    # Closed rather than identified: test_a_case_status lists the one identified case.
    response = examiner.patch(f"{API}/cases/{case['id']}", json={"status": "closed"})
    assert response.status_code == 200, response.text

    engine = make_engine(shared_server.env["RADMATCH_DATABASE_URL"])
    with session_factory(engine)() as session:
        actions = Counter(
            session.scalars(
                select(AuditEntry.action).where(
                    AuditEntry.target_type == "case", AuditEntry.target_id == case["id"]
                )
            )
        )
    engine.dispose()
    assert actions == {
        "case.create": 1,
        "case.conclusion": 3,
        "case.review_request": 1,
        "case.update": 1,
    }
