"""Jobs with a real server and real `radmatch worker` processes, on SQLite and PostgreSQL: index
rebuilds while searches go on, retraining, model activation and rollback, cancellation, workers
killed mid-job, and claims that never overlap.

Most tests count the jobs, builds or models of the whole server, so each has a server of its own;
the retraining test shares one with the requests that are refused before any job exists."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.core.errors import Conflict
from app.jobs.queue import (
    FAILED,
    QUEUED,
    RUNNING,
    claim,
    enqueue,
    enqueue_unless_unfinished,
    recover_stale,
)
from app.storage.database import make_engine, session_factory
from app.storage.tables import AuditEntry, Job
from tests.support.servers import WorkerProcess
from training.cohorts import read_knee_manifest

API = "/api/v1"


@pytest.fixture(scope="module")
def cohort(phantom_manifest):
    return read_knee_manifest(phantom_manifest)


def upload_people(server, cohort, visits=(0, 12, 24, 36)) -> list[int]:
    """Every phantom person's right knee at these visits, through the API; the image ids."""
    image_ids = []
    with server.admin() as client:
        people = {}
        for record in cohort:
            if record.side != "R" or record.visit_months not in visits:
                continue
            if record.person_id not in people:
                response = client.post(f"{API}/people", json={"external_ref": record.person_id})
                assert response.status_code == 201, response.text
                people[record.person_id] = response.json()["id"]
            response = client.post(
                f"{API}/people/{people[record.person_id]}/images",
                files={"file": ("knee.png", record.path.read_bytes())},
                data={
                    "visit_months": record.visit_months,
                    "side": "R",
                    "pixel_spacing_mm": record.pixel_spacing_mm,
                },
            )
            assert response.status_code == 201, response.text
            image_ids.append(response.json()["id"])
    return image_ids


def start_worker(server, tmp_path: Path, name: str = "worker", once: bool = False):
    return WorkerProcess(server.env, tmp_path / f"{name}.log", once=once).start()


def wait_for_progress(server, job_id: int, steps: int, timeout=300.0) -> dict:
    """The job once it is running and has done this many steps."""
    deadline = time.monotonic() + timeout
    with server.admin() as client:
        while time.monotonic() < deadline:
            job = client.get(f"{API}/admin/jobs/{job_id}").json()
            if job["status"] == "running" and job["progress_done"] >= steps:
                return job
            assert job["status"] in ("queued", "running"), job
            time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach step {steps}: {job}")


def search(server, data: bytes) -> dict:
    with server.examiner() as client:
        response = client.post(f"{API}/search", files={"file": ("query.png", data)})
    assert response.status_code == 200, response.text
    return response.json()


def test_an_examiner_may_not_rebuild_the_index(shared_server):
    with shared_server.examiner() as client:
        refused = client.post(f"{API}/admin/index/rebuild")
    assert refused.status_code == 403


def test_rebuild_runs_while_searches_answer(server, cohort, tmp_path):
    image_ids = upload_people(server, cohort)
    query = next(r for r in cohort if r.side == "R" and r.visit_months == 48).path.read_bytes()
    answers: list[int] = []
    stop = threading.Event()

    def keep_searching():
        while not stop.is_set():
            with server.examiner() as client:
                response = client.post(f"{API}/search", files={"file": ("q.png", query)})
            answers.append(response.status_code)

    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    worker = start_worker(server, tmp_path)
    try:
        with server.admin() as client:
            response = client.post(f"{API}/admin/index/rebuild")
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "queued"
        job = server.wait_for_job(response.json()["id"])
        searches_during_rebuild = len(answers)
        server.wait_until_serving(job["result"]["model_version_id"])
    finally:
        stop.set()
        searcher.join()
        worker.stop()
    assert searches_during_rebuild > 0
    assert set(answers) == {200}, Counter(answers)
    assert job["result"]["images"] == len(image_ids)
    assert job["result"]["index_build"] == 1
    assert job["attempt"] == 1 and job["progress_done"] == len(image_ids)
    assert "verified" in job["log_tail"]
    # Its message says what it did, not the last step it reported.
    assert job["progress_message"] == (
        f"flat index of {len(image_ids):,} images (generation {job['result']['index_generation']})"
        f" published as build 1 of model version {job['result']['model_version_id']}"
    )
    with server.admin() as client:
        models = client.get(f"{API}/admin/models").json()
    active = next(model for model in models if model["active"])
    assert active["index_build"] == 1
    assert active["index_published_by_job"] == job["id"]
    assert active["index_published_at"] == job["finished_at"]
    answer = search(server, query)
    assert answer["index_size"] == len(image_ids)
    readiness = server.client().get("/readyz").json()["checks"]
    assert readiness["index"] == "ok" and readiness["index_size"] == len(image_ids)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"preset": "smoke", "overrides": {"epochs": "many"}}, "epochs"),
        ({"preset": "smoke", "overrides": {"learning_speed": 2}}, "learning_speed"),
        ({"preset": "huge"}, "preset"),
        ({"manifest": "/no/such/manifest.csv"}, "manifest"),
    ],
    ids=["epochs not a number", "an unknown option", "an unknown preset", "no such manifest"],
)
def test_training_jobs_with_bad_parameters_are_refused(shared_server, bad, reason):
    """Refused before a job is queued, so it shares the retraining test's server."""
    with shared_server.admin() as client:
        response = client.post(f"{API}/admin/training-jobs", json=bad)
    assert response.status_code == 422, response.text
    assert reason in response.text


def test_retrain_activate_and_roll_back(shared_server, cohort, tmp_path):
    server = shared_server
    image_ids = upload_people(server, cohort)
    query = next(r for r in cohort if r.side == "R" and r.visit_months == 48).path.read_bytes()
    first_version = search(server, query)["model_version"]["id"]
    with server.admin() as client:
        response = client.post(
            f"{API}/admin/training-jobs", json={"preset": "smoke", "overrides": {"epochs": 1}}
        )
        assert response.status_code == 202, response.text
    worker = start_worker(server, tmp_path)
    try:
        trained = server.wait_for_job(response.json()["id"])
        new_version = trained["result"]["model_version_id"]
        with server.admin() as client:
            models = {m["id"]: m for m in client.get(f"{API}/admin/models").json()}
            assert set(models) == {first_version, new_version}
            assert models[first_version]["active"] and not models[new_version]["active"]
            assert "val_mAP" in models[new_version]["metrics"]
            assert models[new_version]["embedded_images"] == 0

            response = client.post(f"{API}/admin/models/{new_version}/activate")
            assert response.status_code == 202, response.text
            activated = server.wait_for_job(response.json()["id"])
        assert activated["result"]["previous_version"] == first_version
        server.wait_until_serving(new_version)
        answer = search(server, query)
        assert answer["model_version"]["id"] == new_version
        assert answer["index_size"] == len(image_ids)
        with server.admin() as client:
            models = {m["id"]: m for m in client.get(f"{API}/admin/models").json()}
            assert models[new_version]["active"] and not models[first_version]["active"]
            assert models[new_version]["embedded_images"] == len(image_ids)
            assert models[first_version]["embedded_images"] == len(image_ids)  # kept for rollback

            response = client.post(f"{API}/admin/models/{first_version}/activate")
            rolled_back = server.wait_for_job(response.json()["id"])
        assert rolled_back["result"]["embedded"] == 0  # its embeddings were all still there
        server.wait_until_serving(first_version)
        assert search(server, query)["model_version"]["id"] == first_version
    finally:
        worker.stop()
    engine = make_engine(server.env["RADMATCH_DATABASE_URL"])
    with session_factory(engine)() as session:
        actions = Counter(
            session.scalars(select(AuditEntry.action).where(AuditEntry.key_id.is_not(None)))
        )
    engine.dispose()
    assert actions["job.create"] == 3
    assert actions["model.register"] == 1 and actions["model.activate"] == 2


def test_cancel_queued_and_running_jobs(server, cohort, tmp_path):
    upload_people(server, cohort)
    with server.admin() as client:
        queued = client.post(f"{API}/admin/index/rebuild").json()
        response = client.post(f"{API}/admin/jobs/{queued['id']}/cancel")
        assert response.status_code == 202 and response.json()["status"] == "cancelled"
        again = client.post(f"{API}/admin/jobs/{queued['id']}/cancel")
        assert again.status_code == 409 and "already cancelled" in again.text
        assert client.post(f"{API}/admin/jobs/999999/cancel").status_code == 404

        long = client.post(
            f"{API}/admin/training-jobs", json={"preset": "smoke", "overrides": {"epochs": 50}}
        ).json()
    worker = start_worker(server, tmp_path)
    try:
        wait_for_progress(server, long["id"], steps=1)
        with server.admin() as client:
            response = client.post(f"{API}/admin/jobs/{long['id']}/cancel")
        assert response.status_code == 202 and response.json()["cancel_requested"]
        job = server.wait_for_job(long["id"], statuses=("cancelled",), timeout=120)
    finally:
        worker.stop()
    assert job["error"] == job["progress_message"] == "cancelled by an admin"
    assert job["progress_done"] < job["progress_total"]
    with server.admin() as client:
        listed = client.get(f"{API}/admin/jobs", params={"status": "cancelled"}).json()
    assert {j["id"] for j in listed["items"]} == {queued["id"], long["id"]}


def test_killed_worker_is_noticed_and_its_job_finished_by_another(server, cohort, tmp_path):
    upload_people(server, cohort)
    with server.admin() as client:
        job = client.post(
            f"{API}/admin/training-jobs", json={"preset": "smoke", "overrides": {"epochs": 4}}
        ).json()
    first = start_worker(server, tmp_path, "first")
    state = wait_for_progress(server, job["id"], steps=4)  # past its first epoch: resumable
    first.kill()
    killed_worker = state["worker"]

    second = start_worker(server, tmp_path, "second")
    try:
        finished = server.wait_for_job(job["id"])
    finally:
        second.stop()
    assert finished["attempt"] == 2
    assert finished["worker"] != killed_worker
    assert f"worker {killed_worker} stopped heartbeating" in finished["log_tail"]
    assert "re-queued" in finished["log_tail"]
    assert "resuming preset smoke" in finished["log_tail"]  # from the epoch the first one saved
    assert finished["result"]["model_version_id"] > 0


def test_two_workers_never_run_the_same_job(server, cohort, tmp_path):
    upload_people(server, cohort, visits=(0,))
    # Straight into the queue: the API queues one rebuild at a time.
    engine = make_engine(server.env["RADMATCH_DATABASE_URL"])
    with session_factory(engine).begin() as session:
        ids = [enqueue(session, "index_rebuild", {}, None).id for _ in range(8)]
    engine.dispose()
    workers = [start_worker(server, tmp_path, f"w{n}", once=True) for n in range(2)]
    for worker in workers:
        worker.process.wait(timeout=300)
    jobs = [server.wait_for_job(i, timeout=5) for i in ids]
    assert all(job["attempt"] == 1 for job in jobs)  # claimed once each, never twice
    assert sorted(job["result"]["index_build"] for job in jobs) == list(range(1, 9))


def test_claims_never_overlap(database_url):
    """Four threads claiming from one queue: every job claimed exactly once."""
    from app.storage.database import upgrade

    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        ids = [enqueue(session, "index_rebuild", {}, None).id for _ in range(40)]
    claimed: list[tuple[str, int]] = []

    def claim_all(name: str):
        while (job := claim(sessions, name)) is not None:
            claimed.append((name, job.id))

    threads = [threading.Thread(target=claim_all, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(job_id for _, job_id in claimed) == ids
    with sessions() as session:
        assert set(session.scalars(select(Job.status))) == {RUNNING}
    engine.dispose()


def test_stale_jobs_are_requeued_then_failed_with_a_reason(database_url):
    from app.storage.database import upgrade

    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        job_id = enqueue(session, "index_rebuild", {}, None, max_attempts=2).id
    for attempt in (1, 2):
        assert claim(sessions, f"host:{attempt}").id == job_id
        assert recover_stale(sessions, timedelta(seconds=60)) == []  # its heartbeat is fresh
        assert recover_stale(sessions, timedelta(seconds=-1)) == [job_id]
        with sessions() as session:
            job = session.get(Job, job_id)
        assert f"attempt {attempt}: worker host:{attempt} stopped heartbeating" in job.error
        assert job.status == (QUEUED if attempt == 1 else FAILED)
    assert "failed after 2 attempts" in job.error and job.finished_at is not None
    assert job.progress_message == job.error  # not the step it was at
    assert claim(sessions, "host:3") is None
    engine.dispose()


def test_a_second_rebuild_is_not_queued_while_one_is_unfinished(server):
    with server.admin() as client:
        first = client.post(f"{API}/admin/index/rebuild")
        assert first.status_code == 202, first.text
        again = client.post(f"{API}/admin/index/rebuild")
        assert again.status_code == 409, again.text
        assert f"index rebuild job #{first.json()['id']} is already queued" in again.text
        listed = client.get(f"{API}/admin/jobs", params={"kind": "index_rebuild"}).json()
        assert [job["id"] for job in listed["items"]] == [first.json()["id"]]
        # Once it is finished (here: cancelled), the next one is queued.
        client.post(f"{API}/admin/jobs/{first.json()['id']}/cancel")
        third = client.post(f"{API}/admin/index/rebuild")
        assert third.status_code == 202, third.text


def test_concurrent_requests_queue_one_rebuild(database_url):
    """Eight threads asking at once: one job, seven refusals naming it."""
    from app.storage.database import upgrade

    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    start = threading.Barrier(8)
    queued: list[int] = []
    refused: list[str] = []

    def ask() -> None:
        start.wait()
        try:
            with sessions.begin() as session:
                job = enqueue_unless_unfinished(
                    session, kind="index_rebuild", parameters={}, key_id=None
                )
                queued.append(job.id)
        except Conflict as refusal:
            refused.append(refusal.message)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(queued) == 1 and len(refused) == 7
    assert all(f"job #{queued[0]} is already queued" in message for message in refused)
    with sessions() as session:
        assert session.scalars(select(Job.id)).all() == queued
    engine.dispose()
