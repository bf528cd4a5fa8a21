"""What an insider or a guesser can do with keys and model files, against a real `radmatch serve`:
wrong keys from one address are throttled (others are not), no key reaches the access log, and
the admin's model registration opens only regular, bounded files in the models directory."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.access.throttle import FailedKeyLimiter
from tests.support.servers import API, Server, new_server, seeded_checkpoint

FAILURES_ALLOWED = 3
WINDOW_SECONDS = 60


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, checkpoint) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("insider")
    running = new_server(
        root,
        f"sqlite:///{root / 'radmatch.db'}",
        checkpoint,
        key_failures_allowed=str(FAILURES_ALLOWED),
        key_failure_window_seconds=str(WINDOW_SECONDS),
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def models_dir(guarded: Server) -> Path:
    path = Path(guarded.env["RADMATCH_DATA_DIR"]) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def client_from(server: Server, address: str, key: str) -> httpx.Client:
    """A client whose connections come from this loopback address (127.0.0.0/8 is all local)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(
        base_url=server.url, headers={"X-API-Key": key}, transport=transport, timeout=30
    )


def metric(server: Server, name: str) -> float:
    with server.admin() as admin:
        text = admin.get("/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return 0.0 if found is None else float(found.group(1))


def test_wrong_keys_from_one_address_are_throttled_and_other_addresses_are_not(guarded):
    wrong = f"rmk_{'0' * 12}_{secrets.token_urlsafe(32)}"
    refused_before = metric(guarded, "radmatch_api_keys_refused_total")
    throttled_before = metric(guarded, "radmatch_api_key_requests_throttled_total")
    with client_from(guarded, "127.0.0.2", wrong) as guesser:
        for _ in range(FAILURES_ALLOWED):
            assert guesser.get(f"{API}/me").status_code == 401
        throttled = guesser.get(f"{API}/me")
        # Even the right key is not looked at from this address until the window frees up.
        right_key = guesser.get(f"{API}/me", headers={"X-API-Key": guarded.examiner_key})
    for response in (throttled, right_key):
        assert response.status_code == 429, response.text
        assert 1 <= int(response.headers["Retry-After"]) <= WINDOW_SECONDS
        assert "too many wrong API keys" in response.json()["detail"]
    with client_from(guarded, "127.0.0.1", guarded.examiner_key) as examiner:
        assert examiner.get(f"{API}/me").status_code == 200
    with client_from(guarded, "127.0.0.1", wrong) as other_guesser:
        assert other_guesser.get(f"{API}/me").status_code == 401
    refused = metric(guarded, "radmatch_api_keys_refused_total") - refused_before
    throttled_count = metric(guarded, "radmatch_api_key_requests_throttled_total")
    assert refused == FAILURES_ALLOWED + 1
    assert throttled_count - throttled_before == 2


def test_an_address_may_try_again_once_its_failures_leave_the_window():
    now = [1000.0]
    limiter = FailedKeyLimiter(failures_allowed=2, window_seconds=60, clock=lambda: now[0])
    limiter.record_failure("192.0.2.1")
    now[0] += 30
    limiter.record_failure("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 30  # until the first failure is 60 s old
    assert limiter.retry_after("192.0.2.2") is None
    now[0] += 30
    assert limiter.retry_after("192.0.2.1") is None
    limiter.record_failure("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 30


def test_no_key_reaches_the_server_log(guarded):
    for parameter in ("api_key", "key"):
        with guarded.client() as client:
            response = client.get(f"{API}/people", params={parameter: guarded.admin_key})
        assert response.status_code == 401
    with guarded.client(guarded.admin_key + "x") as mistyped:
        assert mistyped.get(f"{API}/me").status_code == 401
    with guarded.client() as client:
        client.get(f"{API}/{guarded.admin_key}")
    log = guarded.log.read_text()
    secret = guarded.admin_key.split("_", 2)[2]
    assert secret not in log
    assert guarded.admin_key.split("_", 2)[1] not in log
    assert "GET /api/v1/people?api_key=***" in log  # the request itself is logged


def register(server: Server, path: str | Path) -> httpx.Response:
    with server.admin() as admin:
        return admin.post(f"{API}/admin/models", json={"checkpoint_path": str(path)}, timeout=20)


def assert_refused(response: httpx.Response, *phrases: str) -> str:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    for phrase in phrases:
        assert phrase in detail, detail
    return detail


def test_a_checkpoint_in_the_models_directory_registers_by_name_or_path(guarded, models_dir):
    seeded_checkpoint(models_dir / "seeded.pt", input_size=96)
    by_name = register(guarded, "seeded.pt")
    assert by_name.status_code == 201, by_name.text
    by_path = register(guarded, models_dir / "seeded.pt")
    assert by_path.json()["id"] == by_name.json()["id"]


def test_files_outside_the_models_directory_are_not_opened(guarded, models_dir, tmp_path):
    outside = seeded_checkpoint(tmp_path / "elsewhere.pt", input_size=80)
    assert_refused(register(guarded, outside), "outside the models directory")
    assert_refused(register(guarded, "../../radmatch.db"), "outside the models directory")
    (models_dir / "escape.pt").symlink_to(outside)
    assert_refused(register(guarded, "escape.pt"), "outside the models directory")
    assert_refused(register(guarded, "/etc/passwd"), "outside the models directory")


def test_a_fifo_a_huge_file_and_a_directory_are_refused_unread(guarded, models_dir):
    os.mkfifo(models_dir / "pipe.pt")
    assert_refused(register(guarded, models_dir / "pipe.pt"), "not a regular file")
    with open(models_dir / "huge.pt", "wb") as huge:
        huge.truncate(1024**3)  # sparse: a 1 GiB file that takes no disk
    assert_refused(
        register(guarded, models_dir / "huge.pt"), str(1024**3), "RADMATCH_MAX_CHECKPOINT_BYTES"
    )
    (models_dir / "folder.pt").mkdir()
    assert_refused(register(guarded, models_dir / "folder.pt"), "not a regular file")
    seeded_checkpoint(models_dir / "fed.pt", input_size=112)
    (models_dir / "fed.pt.sha256").unlink()
    os.mkfifo(models_dir / "fed.pt.sha256")
    assert_refused(register(guarded, models_dir / "fed.pt"), "not a regular file")


def test_a_refusal_does_not_quote_the_file(guarded, models_dir):
    # torch's refusal of this file names its first byte ("Unsupported operand 37": "%").
    (models_dir / "notes.pt").write_bytes(b"%PDF-1.4 secret case notes, not a checkpoint\n")
    detail = assert_refused(register(guarded, models_dir / "notes.pt"), "not a radmatch checkpoint")
    assert "operand" not in detail and "37" not in detail and "secret" not in detail


def test_refusals_are_sentences_without_server_paths(guarded, models_dir):
    detail = assert_refused(register(guarded, "absent.pt"), "there is no file named 'absent.pt'")
    assert str(models_dir) not in detail and "Errno" not in detail
    damaged = seeded_checkpoint(models_dir / "damaged.pt", input_size=72)
    with open(damaged, "ab") as file:
        file.write(b"\0")  # no longer the file its .sha256 records
    detail = assert_refused(register(guarded, "damaged.pt"), "does not match the sha256")
    assert str(models_dir) not in detail
