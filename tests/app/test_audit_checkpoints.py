"""Signed checkpoints anchor the audit chain outside the database, on SQLite and PostgreSQL.

With direct write access one can drop the append-only triggers, rewrite an entry, recompute every
hash and the head exactly as app/audit/chain.py does, and the chain alone then verifies; against
a checkpoint signed before, `radmatch audit verify` names the rewrite. So too a log cut back with
its head moved back, and a checkpoint line edited. A torn last line (a writer killed mid-write)
is only a note. The signing key is private to its user; a running server signs at intervals and
at shutdown, and a case report carries the checkpoint of the head it printed."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from app.audit.chain import entry_hash, verify
from app.audit.checkpoint_check import checkpoint_check
from app.audit.checkpointing import Checkpointer
from app.audit.checkpoints import Checkpoint, latest_in_file, read_checkpoint_file
from app.audit.signing import SigningKeyError, load_signer, public_pem, read_public_key
from app.core.config import Settings
from app.storage.database import make_engine, session_factory, upgrade
from app.storage.originals import OriginalStore
from app.storage.tables import AuditChainHead, AuditEntry
from tests.app.test_audit import (
    CLI_TIMEOUT_S,
    drop_append_only_triggers,
    radmatch_audit_verify,
    write_as_the_service_does,
)
from tests.support.servers import API, REPO, new_server, service_env

WAIT_S = 120.0  # for a server to do something: generous, the machine may be busy
# What these check does not depend on the database (the file, the signature, the key): SQLite only.
ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The command line's environment: the default key and checkpoint file in the data dir."""
    return service_env(tmp_path / "data", database_url, None)


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(
        data_dir=Path(env["RADMATCH_DATA_DIR"]), database_url=env["RADMATCH_DATABASE_URL"]
    )


def checkpoints_file(env: dict[str, str]) -> Path:
    return Path(env["RADMATCH_DATA_DIR"]) / "audit" / "checkpoints.jsonl"


def radmatch(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *arguments],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def sign_now(engine: sa.Engine, env: dict[str, str]) -> Checkpoint:
    """What `radmatch audit checkpoint` does, in-process."""
    return Checkpointer.open(settings_of(env), session_factory(engine)).sign_current()


def checked_in_process(engine: sa.Engine, env: dict[str, str], with_checkpoints: bool = True):
    settings = settings_of(env)
    also = []
    if with_checkpoints:
        file = read_checkpoint_file(checkpoints_file(env))
        also = [checkpoint_check(file, load_signer(settings).public_key)]
    return verify(session_factory(engine), OriginalStore(settings.originals_dir), also=also)


def rewrite_history(engine: sa.Engine, sequence: int, details: dict) -> None:
    """The insider's attack: with the triggers dropped, change entry `sequence`'s details and
    recompute its hash, every later entry's previous and own hash, and the head, exactly as the
    chain's code does."""
    drop_append_only_triggers(engine)
    with session_factory(engine).begin() as session:
        entries = session.scalars(select_entries_from(sequence)).all()
        previous = entries[0].previous_hash
        entries[0].details = details
        for entry in entries:
            entry.previous_hash = previous
            entry.entry_hash = previous = entry_hash(entry)
        session.get(AuditChainHead, 1).head_hash = previous


def select_entries_from(sequence: int) -> sa.Select:
    return (
        sa.select(AuditEntry).where(AuditEntry.sequence >= sequence).order_by(AuditEntry.sequence)
    )


def cut_back(engine: sa.Engine, keep: int) -> None:
    """Remove the entries after `keep` and move the head back to it, hash and all."""
    drop_append_only_triggers(engine)
    with session_factory(engine).begin() as session:
        session.execute(sa.delete(AuditEntry).where(AuditEntry.sequence > keep))
        kept = session.scalar(sa.select(AuditEntry).where(AuditEntry.sequence == keep))
        head = session.get(AuditChainHead, 1)
        head.sequence, head.head_hash = keep, kept.entry_hash


def test_a_rewritten_and_rehashed_chain_fails_against_its_checkpoint(engine, env, tmp_path):
    write_as_the_service_does(engine)
    signed = radmatch(env, "audit", "checkpoint", "--json")
    assert signed.returncode == 0, signed.stdout + signed.stderr
    checkpoint = json.loads(signed.stdout)
    assert checkpoint["sequence"] == 5

    rewrite_history(engine, 2, {"name": "examiner ü", "role": "admin"})

    unanchored = dict(env, RADMATCH_AUDIT_CHECKPOINTS=str(tmp_path / "elsewhere.jsonl"))
    blind = radmatch_audit_verify(unanchored)
    assert blind.returncode == 0, blind.stdout + blind.stderr  # the attack is real
    assert "verified: no problems" in blind.stdout

    anchored = radmatch_audit_verify(env)
    assert anchored.returncode == 1, anchored.stdout + anchored.stderr
    assert "checkpoint 1: rewritten: the chain up to sequence 5 is not the one signed at" in (
        anchored.stdout
    )
    assert checkpoint["signed_at"] in anchored.stdout
    report = json.loads(radmatch_audit_verify(env, "--json").stdout)
    assert [(p["kind"], p["checkpoint"], p["sequence"]) for p in report["problems"]] == [
        ("rewritten", 1, 5)
    ]
    assert report["checkpoints"]["checked"] == 1
    assert report["checkpoints"]["latest"]["signature"] == checkpoint["signature"]


def test_a_log_cut_back_after_a_checkpoint_is_reported_truncated(engine, env):
    write_as_the_service_does(engine)
    signed = sign_now(engine, env)
    cut_back(engine, keep=3)

    assert checked_in_process(engine, env, with_checkpoints=False).ok  # the chain alone: fine
    result = radmatch_audit_verify(env, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert [(p["kind"], p["checkpoint"]) for p in problems] == [("truncated", 1)]
    assert problems[0]["message"] == (
        f"the log ends at 3, but a checkpoint signed at {signed.signed_at} covers 5"
    )


@ON_SQLITE
def test_an_edited_or_foreign_checkpoint_fails_its_signature(engine, env, tmp_path):
    write_as_the_service_does(engine)
    sign_now(engine, env)
    path = checkpoints_file(env)
    line = json.loads(path.read_text())
    # The head hash edited to match a rewritten chain: the signature no longer covers it.
    edited = dict(line, head_hash="f" * 64)
    # A checkpoint signed with a key of the attacker's own.
    other = Settings(data_dir=tmp_path / "other")
    foreign = Checkpointer.open(other, session_factory(engine)).sign(
        sequence=5, head_hash=line["head_hash"]
    )
    path.write_text(json.dumps(edited) + "\n" + foreign.line().decode())

    result = radmatch_audit_verify(env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "checkpoint 1: bad_signature: signature does not verify under the public key" in (
        result.stdout
    )
    assert "checkpoint 2: bad_signature: signature does not verify: it names key" in result.stdout
    assert "rewritten" not in result.stdout  # an unsigned claim is not held against the log
    assert "FAILED: 2 problem(s)" in result.stdout


@ON_SQLITE
def test_a_torn_last_line_is_a_note_and_the_next_checkpoint_starts_anew(engine, env):
    write_as_the_service_does(engine)
    first = sign_now(engine, env)
    path = checkpoints_file(env)
    with open(path, "ab") as file:  # a writer killed mid-write
        file.write(first.line()[:40])

    torn = radmatch_audit_verify(env)
    assert torn.returncode == 0, torn.stdout + torn.stderr
    assert "note: checkpoint 2: a torn line (a write cut short), skipped" in torn.stdout
    assert "verified: no problems" in torn.stdout

    second = sign_now(engine, env)
    lines = path.read_bytes().split(b"\n")
    assert lines[1] == first.line()[:40] and lines[2] + b"\n" == second.line()
    assert latest_in_file(path) == second
    result = checked_in_process(engine, env)
    assert result.ok, result.summary()
    assert result.checkpoints_checked == 2 and len(result.notes) == 1


@ON_SQLITE
def test_an_unreadable_line_in_the_middle_is_a_problem(engine, env):
    write_as_the_service_does(engine)
    sign_now(engine, env)
    path = checkpoints_file(env)
    with open(path, "a") as file:
        file.write('{"sequence": 1}\n')
    sign_now(engine, env)
    result = checked_in_process(engine, env)
    assert [(p.kind, p.checkpoint) for p in result.problems] == [("unreadable", 2)]


def test_the_signing_key_is_made_once_and_readable_by_its_user_only(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'radmatch.db'}"
    upgrade(database_url)
    env = service_env(tmp_path / "data", database_url, None)
    settings = Settings(data_dir=tmp_path / "data")
    signer = load_signer(settings)
    path = tmp_path / "data" / "audit" / "signing_key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signer(settings).fingerprint == signer.fingerprint  # kept, not made anew
    assert [p.name for p in path.parent.iterdir()] == ["signing_key.pem"]  # no temporary left

    published = radmatch(env, "audit", "public-key")
    assert published.returncode == 0, published.stderr
    assert signer.fingerprint in published.stdout
    pem = tmp_path / "public.pem"
    pem.write_text(published.stdout)
    assert public_pem(read_public_key(pem)) == public_pem(signer.public_key)

    missing = tmp_path / "nowhere" / "key.pem"
    with pytest.raises(SigningKeyError, match="cannot read the audit signing key"):
        load_signer(Settings(data_dir=tmp_path / "data", audit_signing_key=missing))
    assert not missing.exists()  # a configured key is never made up
    refused = radmatch(dict(env, RADMATCH_AUDIT_SIGNING_KEY=str(missing)), "audit", "checkpoint")
    assert refused.returncode != 0
    assert f"cannot read the audit signing key {missing}" in refused.stderr


@ON_SQLITE
def test_verify_checks_a_copy_against_a_given_public_key(engine, env, tmp_path):
    write_as_the_service_does(engine)
    checkpoint = sign_now(engine, env)
    copy = tmp_path / "offsite.jsonl"
    copy.write_bytes(checkpoint.line())
    pem = tmp_path / "public.pem"
    pem.write_text(public_pem(load_signer(settings_of(env)).public_key))
    # The verifier's side: no signing key at all, only the copy and the public key.
    shutil.rmtree(Path(env["RADMATCH_DATA_DIR"]) / "audit")
    options = ("--checkpoints", str(copy), "--public-key", str(pem))
    result = radmatch_audit_verify(env, *options)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"checkpoints: 1 checked in {copy}; latest: sequence 5" in result.stdout

    rewrite_history(engine, 4, {"number": "2026-002"})
    result = radmatch_audit_verify(env, *options)
    assert result.returncode == 1 and "rewritten" in result.stdout


def test_a_service_signs_at_start_and_at_shutdown_when_the_head_moved(engine, env):
    """The Checkpointer a server runs, with an interval too long to sign in between."""
    write_as_the_service_does(engine)
    settings = settings_of(env).model_copy(update={"audit_checkpoint_interval_s": 3600.0})
    sessions = session_factory(engine)
    checkpointer = Checkpointer.open(settings, sessions)
    path = checkpoints_file(env)
    checkpointer.start()
    try:
        assert [c.sequence for _, c in read_checkpoint_file(path).checkpoints] == [5]
    finally:
        checkpointer.stop()  # the head did not move: nothing more
    assert [c.sequence for _, c in read_checkpoint_file(path).checkpoints] == [5]

    checkpointer = Checkpointer.open(settings, sessions)
    checkpointer.start()  # the newest checkpoint has the head already
    with sessions.begin() as session:
        session.add(AuditEntry(action="test", target_type="case", target_id=1, details={}))
    checkpointer.stop()
    assert [c.sequence for _, c in read_checkpoint_file(path).checkpoints] == [5, 6]
    assert checked_in_process(engine, env).ok


# ---- A running server ---------------------------------------------------------------------------


def database_head(database_url: str) -> tuple[int, str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                sa.select(AuditChainHead.sequence, AuditChainHead.head_hash)
            ).one()
    finally:
        engine.dispose()
    return row.sequence, row.head_hash


def wait_for_checkpoint_of(path: Path, head: tuple[int, str]) -> Checkpoint:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        latest = latest_in_file(path)
        if latest is not None and (latest.sequence, latest.head_hash) == head:
            return latest
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint of {head} in {path}: {latest}")


def pdf_text(pdf: bytes, folder: Path) -> str:
    path = folder / "report.pdf"
    path.write_bytes(pdf)
    return subprocess.run(
        ["pdftotext", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


@ON_SQLITE
def test_a_running_server_signs_at_intervals_in_reports_and_at_shutdown(
    database_url, tmp_path, checkpoint
):
    server = new_server(tmp_path, database_url, checkpoint, audit_checkpoint_interval_s="0.5")
    path = tmp_path / "data" / "audit" / "checkpoints.jsonl"
    try:
        with server.examiner() as client:
            published = client.get(f"{API}/audit/public-key")
            assert published.status_code == 200, published.text
            key = published.json()
            assert httpx.get(f"{server.url}{API}/audit/public-key").status_code == 401

            person = client.post(f"{API}/people", json={"external_ref": "checkpointed"})
            assert person.status_code == 201, person.text
            by_interval = wait_for_checkpoint_of(path, database_head(database_url))
            assert by_interval.key_fingerprint == key["fingerprint"]

            case = client.post(f"{API}/cases", json={"number": "CP-1"}).json()
            head_before_report = database_head(database_url)
            response = client.get(f"{API}/cases/{case['id']}/report.pdf")
            assert response.status_code == 200, response.text
        text = pdf_text(response.content, tmp_path)
        squeezed = "".join(text.split())
        in_report = next(
            c for _, c in read_checkpoint_file(path).checkpoints if c.signature in squeezed
        )
        assert (in_report.sequence, in_report.head_hash) == head_before_report
        assert "Signed audit checkpoint" in text
        assert f"sequence {in_report.sequence}" in text
        assert in_report.head_hash in squeezed and in_report.key_fingerprint in squeezed
        assert len(base64.b64decode(in_report.signature)) == 64
    finally:
        server.stop()
    # The report's own audit entry moved the head: signed by the interval or the stop.
    assert latest_in_file(path).sequence == database_head(database_url)[0]

    # The checkpoint taken off the report, checked with the published key alone.
    copy, pem = tmp_path / "from-report.jsonl", tmp_path / "public.pem"
    copy.write_bytes(in_report.line())
    pem.write_text(key["public_key_pem"])
    env = service_env(tmp_path / "data", database_url, None)
    result = radmatch_audit_verify(env, "--checkpoints", str(copy), "--public-key", str(pem))
    assert result.returncode == 0, result.stdout + result.stderr
    everything = radmatch_audit_verify(env)
    assert everything.returncode == 0, everything.stdout + everything.stderr
