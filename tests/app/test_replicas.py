"""Two `radmatch serve` replicas on one PostgreSQL database: what one commits, the other's index
picks up by itself (RADMATCH_INDEX_SYNC_SECONDS), additions and deletions alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import Server, prepare_database, service_env
from training.cohorts import read_knee_manifest

SYNC_DEADLINE_S = 10.0


def search(client: httpx.Client, image: bytes) -> dict[str, Any]:
    response = client.post(
        "/api/v1/search", files={"file": ("query.png", image, "image/png")}, data={"k": "5"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def summary(answer: dict[str, Any]) -> str:
    people = [(c["person_id"], round(c["similarity"], 6)) for c in answer["candidates"]]
    return f"index_size={answer['index_size']}, candidates={people}"


def poll(ask: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], what: str):
    """Ask until the answer is done, or fail after SYNC_DEADLINE_S with the last answer."""
    deadline = time.monotonic() + SYNC_DEADLINE_S
    while True:
        answer = ask()
        if done(answer):
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"replica B did not {what} within {SYNC_DEADLINE_S} s: {summary(answer)}")
        time.sleep(0.2)


def test_a_replica_follows_uploads_and_deletions_on_another(
    postgres_url: str, tmp_path: Path, checkpoint: Path, request: pytest.FixtureRequest
) -> None:
    """Behind a load balancer, a search on any replica must see what was uploaded or deleted."""
    admin, examiner = prepare_database(postgres_url)
    env = service_env(tmp_path / "data", postgres_url, checkpoint)
    # Asked for only now, so that without PostgreSQL the test skips before synthesising a cohort.
    phantom_manifest: Path = request.getfixturevalue("phantom_manifest")
    # Two people: the one searched for, and another who must stay findable after the deletion.
    records = read_knee_manifest(phantom_manifest)
    target = records[0]
    other = next(r for r in records if r.person_id != target.person_id)
    query = target.path.read_bytes()

    a = Server(env=env, log=tmp_path / "a.log", admin_key=admin, examiner_key=examiner)
    b = Server(env=env, log=tmp_path / "b.log", admin_key=admin, examiner_key=examiner)
    try:
        a.start()
        b.start()
        assert a.port != b.port
        with a.admin() as on_a, b.examiner() as on_b:
            people, images = {}, {}
            for record in (target, other):
                created = on_a.post("/api/v1/people", json={"external_ref": record.person_id})
                assert created.status_code == 201, created.text
                people[record.person_id] = person_id = created.json()["id"]
                file = (record.path.name, record.path.read_bytes(), "image/png")
                uploaded = on_a.post(f"/api/v1/people/{person_id}/images", files={"file": file})
                assert uploaded.status_code == 201, uploaded.text
                images[record.person_id] = uploaded.json()["id"]
            target_id, other_id = people[target.person_id], people[other.person_id]

            found = poll(
                lambda: search(on_b, query),
                lambda answer: (
                    answer["index_size"] == 2
                    and answer["candidates"][0]["person_id"] == target_id
                    and abs(answer["candidates"][0]["similarity"] - 1.0) <= 1e-5
                ),
                "find both uploads, the searched person first at similarity 1",
            )
            assert {c["person_id"] for c in found["candidates"]} == {target_id, other_id}

            deleted = on_a.delete(
                f"/api/v1/images/{images[target.person_id]}", params={"reason": "test"}
            )
            assert deleted.status_code == 200, deleted.text

            after = poll(
                lambda: search(on_b, query),
                lambda answer: (
                    answer["index_size"] == 1
                    and target_id not in {c["person_id"] for c in answer["candidates"]}
                ),
                "drop the deleted image",
            )
            assert [c["person_id"] for c in after["candidates"]] == [other_id]

        for server in (a, b):
            response = httpx.get(f"{server.url}/readyz", timeout=60)
            assert response.status_code == 200, f"{server.url}: {response.text}"
            checks = response.json()["checks"]
            assert checks["index"] == "ok", f"{server.url}: {checks}"
            assert checks["index_size"] == 1, f"{server.url}: {checks}"
    finally:
        b.stop()
        a.stop()
