"""`radmatch demo`: the whole service on the embedded defaults, from nothing, in one command.

It generates two phantom cohorts (one to train on, one whose people are the known gallery), trains
the embedder if there is no model yet, loads the gallery's first visits into the case database,
starts the service with a job worker, and searches it once with a later radiograph of a gallery
person, as an examiner would. Everything it makes is kept under --data-dir and reused, so a second
run starts in seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class DemoPlan:
    data_dir: Path
    preset: str
    train_subjects: int
    gallery_subjects: int
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def run_demo(plan: DemoPlan) -> int:
    from cli import main

    data = plan.data_dir.resolve()
    train_cohort = data / "phantom-train"
    gallery_cohort = data / "phantom-gallery"
    run = data / "model"
    checkpoint = run / "checkpoint.pt"
    os.environ.update(RADMATCH_DATA_DIR=str(data / "service"), RADMATCH_CHECKPOINT=str(checkpoint))

    _step("1/5 phantom cohorts: people to train on, and other people as the known gallery")
    for cohort, subjects, seed, dicom in (
        (train_cohort, plan.train_subjects, 2000, False),
        (gallery_cohort, plan.gallery_subjects, 1000, True),
    ):
        if (cohort / "manifest.csv").exists():
            print(f"reusing {cohort}")
        else:
            command = ["synth", "--out", str(cohort), "--subjects", str(subjects)]
            main(command + ["--seed", str(seed)] + ([] if dicom else ["--no-dicom"]))

    _step(f"2/5 the embedder (ResNet-18, AdaTriplet-AM, preset {plan.preset})")
    if checkpoint.exists():
        print(f"reusing {checkpoint}")
    else:
        main(
            ["train", "--manifest", str(train_cohort / "manifest.csv")]
            + ["--preset", plan.preset, "--out", str(run)]
        )

    _step("3/5 the case database: schema, and the gallery people's first visits")
    main(["db", "upgrade"])
    main(["ingest", "--manifest", str(gallery_cohort / "manifest.csv"), "--baseline-only"])
    admin_key = _new_key("admin", "demo admin")
    examiner_key = _new_key("examiner", "demo examiner")

    _step(f"4/5 the service at {plan.url}, with a job worker")
    # Stop on Ctrl-C and on SIGTERM, even when started from a shell that ignores SIGINT (as a
    # background job is): an explicit handler replaces the inherited "ignore".
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _interrupt)
    command = [sys.executable, "-m", "cli", "serve", "--worker"]
    server = subprocess.Popen(command + ["--host", plan.host, "--port", str(plan.port)])
    try:
        _wait_until_ready(plan.url, server)
        _step("5/5 an example search: a later radiograph of a gallery person")
        _example_search(plan.url, examiner_key, gallery_cohort / "manifest.csv")
        print(
            f"\nThe service runs at {plan.url} (API documentation at {plan.url}/docs).\n"
            f"Admin key (shown once; `radmatch keys create` makes more):\n  {admin_key}\n"
            f"Examiner key:\n  {examiner_key}\n"
            f"Search from another terminal:\n"
            f"  RADMATCH_API_KEY={examiner_key} .venv/bin/radmatch search FILE\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _new_key(role: str, name: str) -> str:
    from app.access.keys import create_key
    from cli import _database_sessions

    with _database_sessions("demo").begin() as session:
        _, key = create_key(session, name, role)
    return key


def _wait_until_ready(url: str, server: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"radmatch demo: the service exited with status {server.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"radmatch demo: the service at {url} did not become ready")


def _example_search(url: str, key: str, manifest: Path) -> None:
    """Search with a gallery person's DICOM from four years after the gallery image."""
    from cli import print_ranking
    from training.cohorts import read_knee_manifest

    records = read_knee_manifest(manifest)
    query = next(r for r in records if r.visit_months == 48 and r.dicom_path is not None)
    print(f"query: {query.dicom_path.name} of {query.person_id}, {query.side} knee, 4 years later")
    with query.dicom_path.open("rb") as file:
        response = httpx.post(
            f"{url}/api/v1/search",
            headers={"X-API-Key": key},
            files={"file": (query.dicom_path.name, file)},
            data={"k": 5},
            timeout=120,
        )
    response.raise_for_status()
    answer = response.json()
    print_ranking(answer)
    ranks = [c["rank"] for c in answer["candidates"] if c["external_ref"] == query.person_id]
    verdict = f"ranked {ranks[0]}" if ranks else "not among the first 5"
    print(f"the right person, {query.person_id}, is {verdict}")
