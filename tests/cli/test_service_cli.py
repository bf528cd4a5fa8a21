"""`radmatch ingest` and `radmatch search` as an admin and an examiner run them, beside a running
server."""

from __future__ import annotations

import subprocess
import sys
import time

import pydicom
import pytest

from cli.gallery import bulk_image
from tests.support.servers import REPO
from training.cohorts import read_knee_manifest
from training.phantom.cohort import CohortSpec, synthesize


def radmatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_ingest_beside_a_running_server_then_search(server, phantom_manifest):
    records = read_knee_manifest(phantom_manifest)
    baselines = [r for r in records if r.visit_months == 0]
    people = {r.person_id for r in baselines}

    first = radmatch(server.env, "ingest", "--manifest", str(phantom_manifest), "--baseline-only")
    assert first.returncode == 0, first.stderr
    assert f"{len(people)} people and {len(baselines)} images added" in first.stdout

    again = radmatch(server.env, "ingest", "--manifest", str(phantom_manifest), "--baseline-only")
    assert again.returncode == 0, again.stderr
    assert (
        f"0 people and 0 images added; {len(baselines)} images were already stored" in again.stdout
    )

    # The running server picks up what another process committed.
    deadline = time.monotonic() + 15
    with server.examiner() as client:
        while client.get("/readyz").json()["checks"].get("index_size") != len(baselines):
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.2)

    query = baselines[3]
    env = {**server.env, "RADMATCH_API_KEY": server.examiner_key}
    found = radmatch(env, "search", str(query.path), "--k", "3", "--url", server.url,
                     "--pixel-spacing-mm", str(query.pixel_spacing_mm))  # fmt: skip
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[2].split()[0] == "1" and f"({query.person_id})" in lines[2]
    assert float(lines[2].split()[1]) == pytest.approx(1.0, abs=1e-4)
    assert ": same person" in lines[2]  # the test checkpoint is calibrated: rows carry evidence
    assert len(lines) == 2 + 3 + 1 and lines[-1].startswith("open set: ")

    refused = radmatch(env, "search", str(phantom_manifest), "--url", server.url)
    assert refused.returncode != 0 and "415" in refused.stderr
    no_key = radmatch(server.env, "search", str(query.path), "--url", server.url)
    assert no_key.returncode != 0 and "RADMATCH_API_KEY" in no_key.stderr


def test_a_cohort_image_is_dated_by_its_dicom_twin(tmp_path):
    """`radmatch ingest` dates each image by its DICOM twin's header, so that searches weigh
    the years between images."""
    manifest = synthesize(CohortSpec(out=tmp_path, subjects=1, seed=8), progress=False)
    records = sorted(read_knee_manifest(manifest), key=lambda r: r.visit_months)
    dates = [bulk_image(r).fields.acquisition_date for r in records]
    for record, when in zip(records, dates, strict=True):
        assert when.strftime("%Y%m%d") == pydicom.dcmread(record.dicom_path).AcquisitionDate
    assert dates == sorted(dates) and dates[-1] > dates[0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_health_is_the_container_health_check(server):
    """`radmatch health`, which the Dockerfile's HEALTHCHECK runs: 0 when ready, else 1 and why."""
    ready = radmatch(server.env, "health", "--url", server.url)
    assert ready.returncode == 0 and ready.stdout.strip() == "ready", ready.stderr
    server.stop()
    gone = radmatch(server.env, "health", "--url", server.url)
    assert gone.returncode == 1 and "does not answer" in gone.stderr
