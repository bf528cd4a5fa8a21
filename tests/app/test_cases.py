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
    assert {k["id"] for k in examiner.get(f"{API}/examiners").json()} >= {me["id"], admin_me["id"]}
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


@pytest.fixture(scope="module")
def reviewer(shared_server) -> Iterator[httpx.Client]:
    """A second examiner, asked for blind reviews."""
    with shared_server.client(shared_server.new_key("reviewer in tests", "examiner")) as client:
        yield client


@pytest.fixture(scope="module")
def outsider(shared_server) -> Iterator[httpx.Client]:
    """An examiner who has worked on none of the cases."""
    with shared_server.client(shared_server.new_key("outsider in tests", "examiner")) as client:
        yield client


def key_id(client: httpx.Client) -> int:
    return client.get(f"{API}/me").json()["id"]


def test_a_blind_review_hides_the_whole_case_until_the_reviewer_concludes(
    examiner, reviewer, people, query, baselines
):
    """While asked to review one search blind, the reviewer sees no one else's conclusion on
    any search of the case, and the case as it was when asked, in the API and the listing (the
    report: tests/app/test_case_report.py); a conclusion on another search does not end the review, and everything they record
    meanwhile is marked as made blind."""
    case = open_case(examiner, "2026-021", description="left knee, found 2026-11-30")
    first = case_search(examiner, case["id"], query)
    other = case_search(examiner, case["id"], baselines[0])
    assert conclude(examiner, case["id"], other, "identification", "seen").status_code == 201
    when_asked = examiner.get(f"{API}/cases/{case['id']}").json()["updated_at"]
    asked = request_review(examiner, case["id"], first, key_id(reviewer))
    assert asked.status_code == 201, asked.text
    changed = examiner.patch(
        f"{API}/cases/{case['id']}", json={"status": "closed", "description": "it is P2"}
    )
    assert changed.status_code == 200, changed.text
    assert conclude(examiner, case["id"], first, "probable", "after asking").status_code == 201

    seen = reviewer.get(f"{API}/cases/{case['id']}").json()
    assert seen["conclusions"]["items"] == [] and seen["conclusions"]["hidden"] == 2
    waiting = reviewer.get(f"{API}/reviews").json()
    assert [(r["case_number"], r["search_id"], r["requested_by"]) for r in waiting] == [
        ("2026-021", first["search_id"], "examiner in tests")
    ]
    assert examiner.get(f"{API}/reviews").json() == []  # asked by, not of, the examiner
    assert seen["conclusions"]["blind_searches"] == [first["search_id"]]
    assert (seen["status"], seen["description"]) == ("open", "left knee, found 2026-11-30")
    assert seen["updated_at"] == when_asked
    assert seen["searches"][1]["candidates"] == other["candidates"]  # the candidates, not them
    assert asked.json()["state"] == "open"
    listed = reviewer.get(f"{API}/cases", params={"number": "2026-021"}).json()["items"]
    assert [(c["status"], c["description"]) for c in listed] == [("open", case["description"])]
    for status, expected in (("closed", []), ("open", ["2026-021"])):
        page = reviewer.get(f"{API}/cases", params={"status": status, "limit": 500}).json()
        assert [c["number"] for c in page["items"] if c["number"] == "2026-021"] == expected
    assert examiner.get(f"{API}/cases/{case['id']}").json()["status"] == "closed"
    refused = reviewer.patch(f"{API}/cases/{case['id']}", json={"status": "open"})
    assert refused.status_code == 409 and "blind" in refused.json()["detail"]

    assert conclude(reviewer, case["id"], other, "possible", "on the other").status_code == 201
    still = reviewer.get(f"{API}/cases/{case['id']}").json()["conclusions"]
    assert still["blind_searches"] == [first["search_id"]] and still["hidden"] == 2
    assert [c["made_blind"] for c in still["items"]] == [True]
    assert conclude(reviewer, case["id"], first, "identification", "review").status_code == 201
    assert conclude(reviewer, case["id"], first, "identification", "again").status_code == 201

    assert reviewer.get(f"{API}/reviews").json() == []
    after = reviewer.get(f"{API}/cases/{case['id']}").json()
    assert after["status"] == "closed" and after["conclusions"]["hidden"] == 0
    assert [(c["examiner"], c["made_blind"]) for c in after["conclusions"]["items"]] == [
        ("examiner in tests", False),
        ("examiner in tests", False),
        ("reviewer in tests", True),
        ("reviewer in tests", True),
        ("reviewer in tests", False),
    ]
    review = after["reviews"][0]
    assert review["state"] == "completed" and review["completed_at"] is not None
    assert (review["reviewer"], review["requested_by"]) == (
        "reviewer in tests",
        "examiner in tests",
    )


def test_who_may_ask_whom_for_a_blind_review(examiner, admin, reviewer, outsider, people, query):
    case = open_case(examiner, "2026-024")
    search = case_search(examiner, case["id"], query)
    for who, status, says in (
        (key_id(examiner), 422, "not by the one asking"),
        (key_id(admin), 422, "is an admin's"),
        (999999, 422, "no active key"),
    ):
        response = request_review(examiner, case["id"], search, who)
        assert (response.status_code, says in response.text) == (status, True), response.text
    refused = request_review(outsider, case["id"], search, key_id(reviewer))
    assert refused.status_code == 403 and "not worked on case" in refused.text
    assert request_review(examiner, case["id"], search, key_id(reviewer)).status_code == 201
    again = request_review(examiner, case["id"], search, key_id(reviewer))
    assert again.status_code == 409 and "open request" in again.text
    assert conclude(examiner, case["id"], search, "possible", "").status_code == 201
    concluded = request_review(reviewer, case["id"], search, key_id(examiner))
    assert concluded.status_code == 422 and "recorded a conclusion" in concluded.text


def test_a_request_is_withdrawn_by_its_asker_or_an_admin(examiner, admin, reviewer, people, query):
    case = open_case(examiner, "2026-025")
    search = case_search(examiner, case["id"], query)
    assert conclude(examiner, case["id"], search, "possible", "").status_code == 201
    reviews = f"{API}/cases/{case['id']}/reviews"
    first = request_review(examiner, case["id"], search, key_id(reviewer)).json()
    assert reviewer.get(f"{API}/cases/{case['id']}").json()["conclusions"]["hidden"] == 1
    assert reviewer.post(f"{reviews}/{first['id']}/withdraw").status_code == 403
    withdrawn = examiner.post(f"{reviews}/{first['id']}/withdraw")
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["state"] == "withdrawn"
    assert withdrawn.json()["withdrawn_by"] == "examiner in tests"
    assert examiner.post(f"{reviews}/{first['id']}/withdraw").status_code == 409
    assert reviewer.get(f"{API}/cases/{case['id']}").json()["conclusions"]["hidden"] == 0
    assert examiner.post(f"{reviews}/999999/withdraw").status_code == 404

    second = request_review(examiner, case["id"], search, key_id(reviewer)).json()
    by_admin = admin.post(f"{reviews}/{second['id']}/withdraw")
    assert by_admin.status_code == 200 and by_admin.json()["withdrawn_by"] == "admin in tests"
    states = [r["state"] for r in examiner.get(f"{API}/cases/{case['id']}").json()["reviews"]]
    assert states == ["withdrawn", "withdrawn"]


def test_a_case_status_follows_its_conclusions(examiner, reviewer, people, query):
    """Identified only while an examiner's standing conclusion is an identification; a
    conclusion changes the case (its last change), and one that leaves no identification
    standing re-opens it."""
    case = open_case(examiner, "2026-022")
    refused = examiner.patch(f"{API}/cases/{case['id']}", json={"status": "identified"})
    assert refused.status_code == 409 and "no identification" in refused.json()["detail"]
    search = case_search(examiner, case["id"], query)
    assert conclude(examiner, case["id"], search, "identification", "").status_code == 201
    concluded = examiner.get(f"{API}/cases/{case['id']}").json()
    assert concluded["status"] == "open" and concluded["updated_at"] > case["updated_at"]
    response = examiner.patch(f"{API}/cases/{case['id']}", json={"status": "identified"})
    assert response.status_code == 200 and response.json()["status"] == "identified"
    assert examiner.patch(f"{API}/cases/{case['id']}", json={"status": "solved"}).status_code == 422
    listed = examiner.get(f"{API}/cases", params={"status": "identified"}).json()
    assert [c["number"] for c in listed["items"]] == ["2026-022"]
    assert examiner.get(f"{API}/cases/999999").status_code == 404

    assert conclude(reviewer, case["id"], search, "identification", "").status_code == 201
    assert conclude(examiner, case["id"], search, "probable", "on reflection").status_code == 201
    still = examiner.get(f"{API}/cases/{case['id']}").json()
    assert still["status"] == "identified"  # the reviewer's identification stands
    assert conclude(reviewer, case["id"], search, "possible", "").status_code == 201
    assert examiner.get(f"{API}/cases/{case['id']}").json()["status"] == "open"


def test_every_change_to_a_case_is_in_its_audit_trail(
    shared_server, examiner, reviewer, people, query
):
    case = open_case(examiner, "2026-023")
    search = case_search(examiner, case["id"], query)
    for conclusion in ("possible", "probable"):
        assert conclude(examiner, case["id"], search, conclusion, "").status_code == 201
    assert request_review(examiner, case["id"], search, key_id(reviewer)).status_code == 201
    assert conclude(reviewer, case["id"], search, "identification", "review").status_code == 201
    # Closed rather than identified: test_a_case_status_follows_its_conclusions lists the one
    # identified case.
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


# --- marked features, measurements and sequential unmasking ------------------------------------


def spaced_search(client: httpx.Client, case_id: int, record: ImageRecord, spacing: float) -> dict:
    response = client.post(
        f"{API}/cases/{case_id}/searches",
        files={"file": ("query.png", record.path.read_bytes())},
        data={"pixel_spacing_mm": spacing},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_marks_and_measurements_are_kept_with_the_conclusion(examiner, people, query, baselines):
    """Marks and measurements are stored with the conclusion as sent, each measurement's value
    computed from its points and its image's pixel spacing; a point off its image, a mark
    without the candidate's image, another person's image or a malformed measurement is
    refused and nothing is recorded."""
    case = open_case(examiner, "2026-030")
    search = spaced_search(examiner, case["id"], query, spacing=0.2)
    top = search["candidates"][0]
    image_id = top["images"][0]["image_id"]
    facts = examiner.get(f"{API}/searches/{search['search_id']}/query/facts").json()
    width, height = facts["width"], facts["height"]
    body = {
        "search_id": search["search_id"],
        "person_id": top["person_id"],
        "conclusion": "probable",
        "comment": "two features correspond",
        "candidate_image_id": image_id,
        "marks": [
            {
                "number": 1,
                "label": "bone island",
                "query": {"x": 10, "y": 12},
                "candidate": {"x": 11, "y": 13},
            },
            {
                "number": 2,
                "label": "osteophyte",
                "query": {"x": width, "y": height},
                "candidate": {"x": 0, "y": 0},
            },
        ],
        "measurements": [
            {
                "image": "query",
                "kind": "distance",
                "points": [{"x": 0, "y": 0}, {"x": 30, "y": 40}],
            },
            {
                "image": "candidate",
                "kind": "angle",
                "points": [{"x": 10, "y": 0}, {"x": 0, "y": 0}, {"x": 0, "y": 10}],
                "label": "joint line",
            },
        ],
    }
    conclusions = f"{API}/cases/{case['id']}/conclusions"
    other_image = next(
        c["images"][0]["image_id"]
        for c in search["candidates"]
        if c["person_id"] != top["person_id"]
    )
    off_query = {**body["marks"][0], "query": {"x": width + 1, "y": 0}}
    for bad, words in (
        ({**body, "marks": [off_query]}, "outside the query"),
        ({**body, "candidate_image_id": None}, "candidate_image_id"),
        (
            {**body, "candidate_image_id": other_image},
            f"is not an image of person {top['person_id']}",
        ),
        ({**body, "marks": body["marks"][:1] * 2}, "a number of its own"),
        (
            {**body, "measurements": [{**body["measurements"][0], "kind": "angle"}]},
            "takes 3 points",
        ),
    ):
        refused = examiner.post(conclusions, json=bad)
        assert refused.status_code == 422 and words in refused.text, refused.text
    assert examiner.get(conclusions).json()["items"] == []

    recorded = examiner.post(conclusions, json=body)
    assert recorded.status_code == 201, recorded.text
    saved = recorded.json()
    assert saved["marks"] == [
        {
            **mark,
            "query": {k: float(v) for k, v in mark["query"].items()},
            "candidate": {k: float(v) for k, v in mark["candidate"].items()},
        }
        for mark in body["marks"]
    ]
    distance, angle = saved["measurements"]
    assert (distance["value"], distance["unit"], distance["pixel_spacing_mm"]) == (10.0, "mm", 0.2)
    assert (angle["value"], angle["unit"], angle["label"]) == (90.0, "°", "joint line")
    assert saved["candidate_image_id"] == image_id and saved["ranking_seen"] is True
    assert examiner.get(conclusions).json()["items"] == [saved]


def ask_sequential(client: httpx.Client, case_id: int, search: dict, reviewer_id: int, person_id):
    return client.post(
        f"{API}/cases/{case_id}/reviews",
        json={
            "search_id": search["search_id"],
            "reviewer_key_id": reviewer_id,
            "sequential_unmasking": True,
            "person_id": person_id,
        },
    )


def test_sequential_unmasking_shows_one_candidate_until_the_reviewer_concludes(
    shared_server, examiner, reviewer, people, query
):
    """Under sequential unmasking the reviewer is shown the asker's chosen candidate without
    rank, score, evidence or the open-set answer (case, search, re-run and report alike), may
    conclude only on that candidate, and that conclusion is recorded as made before the ranking
    was seen; then the whole ranking is shown."""
    case = open_case(examiner, "2026-031")
    search = case_search(examiner, case["id"], query)
    shown = search["candidates"][1]
    reviews = f"{API}/cases/{case['id']}/reviews"
    base = {"search_id": search["search_id"], "reviewer_key_id": key_id(reviewer)}
    for bad, words in (
        ({**base, "sequential_unmasking": True}, "needs person_id"),
        ({**base, "person_id": shown["person_id"]}, "goes with sequential_unmasking"),
        ({**base, "sequential_unmasking": True, "person_id": 999999}, "not a candidate"),
    ):
        refused = examiner.post(reviews, json=bad)
        assert refused.status_code == 422 and words in refused.text, refused.text
    asked = ask_sequential(examiner, case["id"], search, key_id(reviewer), shown["person_id"])
    assert asked.status_code == 201, asked.text
    assert (asked.json()["sequential_unmasking"], asked.json()["person_id"]) == (
        True,
        shown["person_id"],
    )

    masked = {
        "review_id": asked.json()["id"],
        "person_id": shown["person_id"],
        "external_ref": shown["external_ref"],
        "image_ids": sorted(match["image_id"] for match in shown["images"]),
    }
    seen = reviewer.get(f"{API}/cases/{case['id']}").json()["searches"][0]
    direct = reviewer.get(f"{API}/searches/{search['search_id']}").json()
    for answer in (seen, direct):
        assert answer["masked"] == masked
        assert answer["candidates"] == [] and answer["open_set"] is None
        assert "similarity" not in str(answer)
    unmasked = examiner.get(f"{API}/searches/{search['search_id']}").json()
    assert unmasked["masked"] is None and unmasked["candidates"] == search["candidates"]
    rerun = reviewer.post(f"{API}/searches/{search['search_id']}/rerun")
    assert rerun.status_code == 409 and "sequential unmasking" in rerun.text
    report = reviewer.get(f"{API}/cases/{case['id']}/report.pdf")
    assert report.status_code == 409 and "sequential unmasking" in report.text
    explanation = (
        f"{API}/searches/{search['search_id']}/candidates/{shown['person_id']}/explanation"
    )
    assert reviewer.get(explanation).status_code == 409
    appearances = f"{API}/people/{shown['person_id']}/searches"
    assert search["search_id"] not in [a["search_id"] for a in reviewer.get(appearances).json()]
    assert search["search_id"] in [a["search_id"] for a in examiner.get(appearances).json()]

    other = {
        "search_id": search["search_id"],
        "person_id": search["candidates"][0]["person_id"],
        "conclusion": "excluded",
    }
    conclusions = f"{API}/cases/{case['id']}/conclusions"
    refused = reviewer.post(conclusions, json=other)
    assert refused.status_code == 422 and "the candidate you were shown" in refused.text
    recorded = reviewer.post(conclusions, json={**other, "person_id": shown["person_id"]})
    assert recorded.status_code == 201, recorded.text
    assert (recorded.json()["ranking_seen"], recorded.json()["made_blind"]) == (False, True)

    after = reviewer.get(f"{API}/cases/{case['id']}").json()
    assert after["searches"][0]["masked"] is None
    assert after["searches"][0]["candidates"] == search["candidates"]
    assert after["reviews"][0]["state"] == "completed"
    assert search["search_id"] in [a["search_id"] for a in reviewer.get(appearances).json()]
    later = reviewer.post(conclusions, json={**other, "conclusion": "possible"})
    assert later.status_code == 201 and later.json()["ranking_seen"] is True
    assert reviewer.get(f"{API}/cases/{case['id']}/report.pdf").status_code == 200


def test_an_explanation_map_sums_to_the_similarity_of_the_search(
    examiner, people, query, baselines
):
    """The maps of the query and a candidate's image each sum to their similarity, which is the
    one the search reported; another person's image or a person who is no candidate is
    refused."""
    case = open_case(examiner, "2026-032")
    search = spaced_search(examiner, case["id"], query, spacing=0.2)
    for candidate in search["candidates"]:
        explained = examiner.get(
            f"{API}/searches/{search['search_id']}/candidates/{candidate['person_id']}/explanation"
        )
        assert explained.status_code == 200, explained.text
        answer = explained.json()
        assert answer["image_id"] == candidate["images"][0]["image_id"]
        assert answer["similarity"] == pytest.approx(candidate["similarity"], abs=1e-4)
        for side in ("query", "candidate"):
            cells = [cell for row in answer[side]["map"] for cell in row]
            assert len(cells) == 4  # the test model's 64 px input gives a 2 x 2 feature grid
            assert sum(cells) == pytest.approx(answer["similarity"], abs=1e-5)
            region = answer[side]["region"]
            assert (
                region["x"] >= 0 and region["x"] + region["width"] <= answer[side]["width"] + 1e-6
            )
    first, second = search["candidates"][:2]
    explanation = (
        f"{API}/searches/{search['search_id']}/candidates/{first['person_id']}/explanation"
    )
    wrong = examiner.get(explanation, params={"image_id": second["images"][0]["image_id"]})
    assert wrong.status_code == 422 and "is not an image of person" in wrong.text
    outside = examiner.get(f"{API}/searches/{search['search_id']}/candidates/999999/explanation")
    assert outside.status_code == 404 and "not a candidate" in outside.text
