"""Every file bundled with pydicom, uploaded to a real server as a radiograph: each is accepted or
refused with a clear 4xx (never a 5xx), and a refusal leaves no row, no original and no index entry
behind. pydicom's samples are a wide spread of odd, broken and non-image DICOM, which is what an
upload endpoint meets in the field."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import httpx
import pydicom.data
import pytest

from tests.support.servers import Server

# As in tests/model/test_decode.py: globbed from the installed package, never get_testdata_files()
# (which downloads). Here every regular file counts, whatever its extension.
BUNDLED_ROOT = Path(pydicom.data.DATA_ROOT) / "test_files"
BUNDLED = sorted(path for path in BUNDLED_ROOT.rglob("*") if path.is_file())


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_bundled_pydicom_file_is_accepted_or_clearly_refused(server: Server) -> None:
    """One server for all files (starting it is the expensive part); failures are collected so one
    run names every file that misbehaves."""
    assert len(BUNDLED) > 100, f"pydicom's test files were not found under {BUNDLED_ROOT}"
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    accepted: set[str] = set()
    with server.examiner() as client:
        created = client.post("/api/v1/people", json={"external_ref": "pydicom-test-files"})
        assert created.status_code == 201, created.text
        person_id = created.json()["id"]
        for path in BUNDLED:
            name = path.relative_to(BUNDLED_ROOT).as_posix()
            data = path.read_bytes()
            response = client.post(
                f"/api/v1/people/{person_id}/images",
                files={"file": (path.name, data, "application/octet-stream")},
            )
            statuses[response.status_code] += 1
            failures.extend(f"{name}: {problem}" for problem in upload_problems(response, data))
            if response.status_code in (200, 201):
                accepted.add(hashlib.sha256(data).hexdigest())
        person = client.get(f"/api/v1/people/{person_id}")
        ready = client.get("/readyz")

    summary = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
    assert not failures, f"{len(failures)} bad answers ({summary}):\n" + "\n".join(failures)
    refused = sum(count for status, count in statuses.items() if 400 <= status < 500)
    assert accepted, f"nothing was accepted ({summary}): the test measures nothing"
    assert refused, f"nothing was refused ({summary}): the test measures nothing"

    # Nothing left behind: one image row per distinct accepted file, and exactly their originals.
    assert person.status_code == 200, person.text
    rows = person.json()["images"]
    assert sorted(row["sha256"] for row in rows) == sorted(accepted)
    originals = Path(server.env["RADMATCH_DATA_DIR"]) / "originals"
    stored = [path for path in originals.rglob("*") if path.is_file()]
    assert sorted(path.name for path in stored) == sorted(accepted)
    for path in stored:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path
    # ... and exactly their embeddings in the index.
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["index"] == "ok", ready.text
    assert ready.json()["checks"]["index_size"] == len(accepted), ready.text

    assert server.process is not None and server.process.poll() is None, "the server died"


def upload_problems(response: httpx.Response, data: bytes) -> list[str]:
    """What is wrong with one upload's answer: a 5xx, a status outside 2xx/4xx, a 4xx without a
    readable reason, or a 2xx that does not describe the bytes sent."""
    status = response.status_code
    if status in (200, 201):
        body = response.json()
        sha256 = hashlib.sha256(data).hexdigest()
        if body.get("sha256") != sha256 or body.get("size_bytes") != len(data):
            return [f"{status} describes other bytes: {response.text[:300]}"]
        return []
    if not 400 <= status < 500:
        return [f"status {status}: {response.text[:300]}"]
    try:
        detail = response.json().get("detail")
    except ValueError:
        return [f"{status} without a JSON body: {response.text[:300]}"]
    if not isinstance(detail, str) or not detail.strip():
        return [f"{status} without a detail message: {response.text[:300]}"]
    return []
