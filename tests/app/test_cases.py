"""Cases through a real server, on SQLite and PostgreSQL: searches kept with a case, signed
conclusions that are never overwritten, blind review, and the case's audit trail."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from app.storage.database import make_engine, session_factory
from app.storage.tables import AuditEntry
from training.cohorts import read_knee_manifest

API = "/api/v1"


@pytest.fixture(scope="module")
def baselines(phantom_manifest):
    """Three people's baseline right knees."""
    records = read_knee_manifest(phantom_manifest)
    chosen = [r for r in records if r.visit_months == 0 and r.side == "R"]
    return chosen[:3]


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


def test_case_searches_conclusions_and_blind_review(server, baselines):
    examiner, admin = server.examiner(), server.admin()
    people = add_gallery(examiner, baselines)
    me = examiner.get(f"{API}/me").json()
    admin_me = admin.get(f"{API}/me").json()
    assert me["role"] == "examiner" and admin_me["role"] == "admin"
    assert {k["id"] for k in examiner.get(f"{API}/examiners").json()} == {me["id"], admin_me["id"]}
    limits = examiner.get(f"{API}/limits").json()
    assert limits["max_search_k"] == 100 and limits["max_upload_bytes"] == 256 * 2**20

    response = examiner.post(f"{API}/cases", json={"number": "2026-017", "description": "knee"})
    assert response.status_code == 201, response.text
    case = response.json()
    assert case["status"] == "open"
    duplicate = examiner.post(f"{API}/cases", json={"number": "2026-017"})
    assert duplicate.status_code == 409 and "2026-017" in duplicate.text
    other_case = examiner.post(f"{API}/cases", json={"number": "2026-018"}).json()

    # The same bytes as a gallery image: the one search the untrained test model must rank right.
    query = baselines[1].path.read_bytes()
    response = examiner.post(
        f"{API}/cases/{case['id']}/searches",
        files={"file": ("query.png", query)},
        data={"k": 3, "pixel_spacing_mm": baselines[1].pixel_spacing_mm},
    )
    assert response.status_code == 200, response.text
    search = response.json()
    assert search["case_id"] == case["id"]
    first = search["candidates"][0]
    assert first["person_id"] == people[baselines[1].person_id]
    assert examiner.get(f"{API}/searches/{search['search_id']}/query").content == query
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

    conclude = f"{API}/cases/{case['id']}/conclusions"
    body = {"search_id": search["search_id"], "person_id": first["person_id"]}
    for bad, status in (
        ({**body, "conclusion": "certain"}, 422),
        ({**body, "person_id": 999999, "conclusion": "possible"}, 422),
        ({**body, "search_id": 999999, "conclusion": "possible"}, 422),
    ):
        assert examiner.post(conclude, json=bad).status_code == status
    wrong_case = examiner.post(
        f"{API}/cases/{other_case['id']}/conclusions", json={**body, "conclusion": "possible"}
    )
    assert wrong_case.status_code == 422 and "was not run in case" in wrong_case.text

    response = examiner.post(conclude, json={**body, "conclusion": "possible", "comment": "first"})
    assert response.status_code == 201, response.text
    assert response.json()["examiner"] == "examiner in tests"
    examiner.post(conclude, json={**body, "conclusion": "probable", "comment": "on reflection"})
    history = examiner.get(f"{API}/cases/{case['id']}").json()["conclusions"]
    assert [c["conclusion"] for c in history["items"]] == ["possible", "probable"]  # both kept

    reviews = f"{API}/cases/{case['id']}/reviews"
    self_review = examiner.post(
        reviews, json={"search_id": search["search_id"], "reviewer_key_id": me["id"]}
    )
    assert self_review.status_code == 422
    response = examiner.post(
        reviews, json={"search_id": search["search_id"], "reviewer_key_id": admin_me["id"]}
    )
    assert response.status_code == 201, response.text

    blind = admin.get(f"{API}/cases/{case['id']}").json()
    assert blind["conclusions"]["items"] == []
    assert blind["conclusions"]["hidden"] == 2
    assert blind["conclusions"]["blind_searches"] == [search["search_id"]]
    assert blind["searches"][0]["candidates"] == search["candidates"]  # the candidates, not them
    admin.post(conclude, json={**body, "conclusion": "identification", "comment": "review"})
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

    response = examiner.patch(f"{API}/cases/{case['id']}", json={"status": "identified"})
    assert response.status_code == 200 and response.json()["status"] == "identified"
    assert examiner.patch(f"{API}/cases/{case['id']}", json={"status": "solved"}).status_code == 422
    listed = examiner.get(f"{API}/cases", params={"status": "identified"}).json()
    assert [c["number"] for c in listed["items"]] == ["2026-017"]
    assert examiner.get(f"{API}/cases/999999").status_code == 404

    engine = make_engine(server.env["RADMATCH_DATABASE_URL"])
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
