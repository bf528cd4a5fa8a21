"""The audit log as a hash chain: entries written by the service's own code chain without gaps,
also when several writers commit at once; the database refuses to change or remove them; and
`radmatch audit verify` finds an edited entry, a removed entry, a forged head and a changed or
missing original, naming each, and exits non-zero."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.access.keys import create_key, revoke_key
from app.audit.chain import GENESIS_HASH, Verification, canonical_entry, verify
from app.cases.service import audit as case_audit
from app.serving.model_versions import activate
from app.storage.database import downgrade, make_engine, session_factory, upgrade
from app.storage.originals import OriginalStore
from app.storage.tables import AuditChainHead, AuditEntry, Image, ModelVersion, Person, Search
from tests.support.servers import REPO, service_env

CLI_TIMEOUT_S = 120  # a subprocess imports torch; the machine may be busy


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def chain(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(
                AuditEntry.id,
                AuditEntry.sequence,
                AuditEntry.previous_hash,
                AuditEntry.entry_hash,
                AuditEntry.action,
            ).order_by(AuditEntry.sequence)
        ).all()


def head(engine: sa.Engine) -> tuple[int, str]:
    with engine.connect() as connection:
        row = connection.execute(sa.select(AuditChainHead.sequence, AuditChainHead.head_hash)).one()
    return row.sequence, row.head_hash


def assert_contiguous(engine: sa.Engine) -> list[sa.Row]:
    rows = chain(engine)
    assert [r.sequence for r in rows] == list(range(1, len(rows) + 1))
    assert [r.previous_hash for r in rows] == [GENESIS_HASH] + [r.entry_hash for r in rows[:-1]]
    assert head(engine) == (len(rows), rows[-1].entry_hash if rows else GENESIS_HASH)
    return rows


def checked(engine: sa.Engine, store_root: Path) -> Verification:
    return verify(session_factory(engine), OriginalStore(store_root))


def write_as_the_service_does(engine: sa.Engine) -> None:
    """Audit entries from several of the service's own writers, some in one transaction."""
    sessions = session_factory(engine)
    with sessions.begin() as session:
        admin, _ = create_key(session, "admin", "admin")
        examiner, _ = create_key(session, "examiner ü", "examiner")
    with sessions.begin() as session:
        revoke_key(session, examiner.id)
        case_audit(session, admin.id, "case.create", 7, number="2026-001", note=("a", 1.5))
    with sessions.begin() as session:
        version = ModelVersion(
            sha256="a" * 64, checkpoint_path="/x", dimension=128, metrics={}, info={}
        )
        session.add(version)
        session.flush()
        activate(session, version, admin.id)


def drop_append_only_triggers(engine: sa.Engine) -> None:
    """What an attacker with the database's owner account can do before editing the log."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("DROP TRIGGER audit_log_no_update_or_delete ON audit_log")
            connection.exec_driver_sql("DROP TRIGGER audit_chain_forward_only ON audit_chain")
        else:
            for trigger in ("log_no_update", "log_no_delete", "chain_no_rewind", "chain_no_delete"):
                connection.exec_driver_sql(f"DROP TRIGGER audit_{trigger}")


def test_the_services_audit_entries_form_a_valid_chain(engine, tmp_path):
    write_as_the_service_does(engine)
    rows = assert_contiguous(engine)
    assert [r.action for r in rows] == [
        "key.create",
        "key.create",
        "key.revoke",
        "case.create",
        "model.activate",
    ]
    assert [r.id for r in rows] == sorted(r.id for r in rows)  # added order is chain order
    result = checked(engine, tmp_path / "originals")
    assert result.ok, result.summary()
    assert (result.entries_checked, result.head_sequence) == (5, 5)


def test_each_hash_covers_the_stored_fields(engine):
    """Recomputed by hand from the rows as a new session reads them back: the hash is of what
    the database holds, in the documented canonical form."""
    write_as_the_service_does(engine)
    with session_factory(engine)() as session:
        entries = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.sequence)).all()
    assert entries
    for entry in entries:
        canonical = {
            "sequence": entry.sequence,
            "previous_hash": entry.previous_hash,
            "at": entry.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"),
            "key_id": entry.key_id,
            "action": entry.action,
            "target_type": entry.target_type,
            "target_id": entry.target_id,
            "details": entry.details,
        }
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(text.encode()).hexdigest() == entry.entry_hash


def test_a_rolled_back_transaction_leaves_no_gap(engine, tmp_path):
    sessions = session_factory(engine)
    with sessions.begin() as session:
        create_key(session, "first", "admin")
    with pytest.raises(RuntimeError), sessions.begin() as session:
        create_key(session, "never committed", "admin")
        session.flush()  # the entry took position 2 ...
        raise RuntimeError("the request failed")  # ... and gives it back
    with sessions.begin() as session:
        create_key(session, "second", "admin")
    rows = assert_contiguous(engine)
    assert len(rows) == 2
    assert checked(engine, tmp_path).ok


def test_timestamps_hash_alike_whatever_the_session_time_zone(postgres_url, tmp_path):
    """PostgreSQL returns timestamps in the session's zone; a caller may pass any zone. The hash is
    of the UTC instant, so a chain written in one zone verifies in another."""
    upgrade(postgres_url)
    kolkata = sa.create_engine(postgres_url, connect_args={"options": "-c TimeZone=Asia/Kolkata"})
    utc = make_engine(postgres_url)
    try:
        with session_factory(kolkata).begin() as session:
            create_key(session, "written at +05:30", "admin")
            session.add(
                AuditEntry(
                    at=datetime(
                        2026, 3, 1, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-7))
                    ),
                    action="note",
                    target_type="test",
                    details={},
                )
            )
        assert verify(session_factory(kolkata), OriginalStore(tmp_path)).ok
        assert verify(session_factory(utc), OriginalStore(tmp_path)).ok
        with utc.connect() as connection:
            at = connection.scalar(sa.select(AuditEntry.at).where(AuditEntry.action == "note"))
        assert at == datetime(2026, 3, 2, 6, 59, 59, 999999, tzinfo=UTC)
    finally:
        kolkata.dispose()
        utc.dispose()


def test_concurrent_writers_make_one_contiguous_chain(engine, tmp_path):
    """Threads committing at once each get their own positions: none shared, none skipped."""
    threads, transactions = 4, 6
    sessions = session_factory(engine)
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            start.wait()
            for i in range(transactions):
                with sessions.begin() as session:
                    row, _ = create_key(session, f"worker {worker} key {i}", "examiner")
                    if i % 2:
                        revoke_key(session, row.id)  # two entries in one transaction
        except BaseException as error:  # reported below, from the test's thread
            errors.append(error)

    workers = [threading.Thread(target=write, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert errors == []
    rows = assert_contiguous(engine)
    assert len(rows) == threads * transactions * 3 // 2
    result = checked(engine, tmp_path)
    assert result.ok, result.summary()


def test_the_database_refuses_to_change_or_remove_entries(engine):
    write_as_the_service_does(engine)
    before = chain(engine)
    for statement in (
        "UPDATE audit_log SET details = '{}' WHERE sequence = 2",
        "UPDATE audit_log SET action = 'nothing' ",
        "DELETE FROM audit_log WHERE sequence = 3",
        "DELETE FROM audit_log",
        "UPDATE audit_chain SET sequence = 0, head_hash = '" + GENESIS_HASH + "'",
        "DELETE FROM audit_chain",
    ):
        refused = pytest.raises(sa.exc.IntegrityError, match="append-only|only moves forward")
        with refused, engine.begin() as connection:
            connection.exec_driver_sql(statement)
    # Through the ORM too: an edited entry does not commit.
    refused = pytest.raises(sa.exc.IntegrityError, match="append-only")
    with refused, session_factory(engine).begin() as session:
        entry = session.scalars(sa.select(AuditEntry).where(AuditEntry.sequence == 1)).one()
        entry.details = {"name": "someone else"}
    if engine.dialect.name == "postgresql":
        refused = pytest.raises(sa.exc.IntegrityError, match="append-only")
        with refused, engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE audit_log")
    assert chain(engine) == before


def store_evidence(engine: sa.Engine, store: OriginalStore) -> dict[str, str]:
    """Two images (one purged: its file is gone by design) and a search, with their originals."""
    data = {name: f"radiograph {name}".encode() * 50 for name in ("kept", "purged", "query")}
    sha = {name: hashlib.sha256(body).hexdigest() for name, body in data.items()}
    for name in ("kept", "query"):
        store.put(sha[name], data[name])
    with session_factory(engine).begin() as session:
        person = Person(external_ref="P-1")
        version = ModelVersion(
            sha256="b" * 64, checkpoint_path="/x", dimension=128, metrics={}, info={}
        )
        session.add_all([person, version])
        session.flush()
        for name in ("kept", "purged"):
            session.add(
                Image(
                    person_id=person.id,
                    sha256=sha[name],
                    size_bytes=len(data[name]),
                    format="png",
                    image_metadata={},
                    original_purged_at=datetime.now(UTC) if name == "purged" else None,
                )
            )
        session.add(
            Search(
                query_sha256=sha["query"],
                model_version_id=version.id,
                index_generation=0,
                index_size=2,
                parameters={},
                response={},
            )
        )
    return sha


def radmatch_audit_verify(env: dict[str, str], *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cli", "audit", "verify", *options]
    return subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )


def test_verify_finds_edits_removals_and_changed_originals(database_url, engine, tmp_path):
    """The real command, as an operator runs it: clean, then after an attacker's edits."""
    env = service_env(tmp_path / "data", database_url, None)
    store = OriginalStore(tmp_path / "data" / "originals")
    write_as_the_service_does(engine)
    sha = store_evidence(engine, store)

    clean = radmatch_audit_verify(env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "5 entries checked" in clean.stdout and "2 checked" in clean.stdout
    assert "no problems" in clean.stdout

    drop_append_only_triggers(engine)
    with engine.begin() as connection:
        edited_id = connection.scalar(sa.text("SELECT id FROM audit_log WHERE sequence = 2"))
        connection.execute(
            sa.update(AuditEntry)
            .where(AuditEntry.sequence == 2)
            .values(details={"name": "examiner ü", "role": "admin"})
        )
        connection.execute(sa.delete(AuditEntry).where(AuditEntry.sequence == 4))
    store.path(sha["kept"]).write_bytes(b"a different radiograph")
    store.remove(sha["query"])

    tampered = radmatch_audit_verify(env, "--json")
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    report = json.loads(tampered.stdout)
    assert report["ok"] is False
    assert (report["entries_checked"], report["originals_checked"]) == (4, 2)
    found = [
        (p["kind"], p["sequence"], p["entry_id"], p["sha256"], p["referenced_by"])
        for p in report["problems"]
    ]
    assert found[0] == ("edited", 2, edited_id, None, [])  # the first break
    assert found[1][:2] == ("missing", 5)  # the entry after the gap
    assert "entry 4 removed" in report["problems"][1]["message"]
    assert sorted(found[2:]) == sorted(
        [
            ("original_changed", None, None, sha["kept"], ["image 1"]),
            ("original_missing", None, None, sha["query"], ["search 1"]),
        ]
    )

    text = radmatch_audit_verify(env)
    assert text.returncode == 1
    assert "audit entry 2" in text.stdout and "edited" in text.stdout
    assert "FAILED: 4 problem(s)" in text.stdout


def test_verify_finds_a_removed_last_entry_a_forged_head_and_reordering(engine, tmp_path):
    write_as_the_service_does(engine)
    drop_append_only_triggers(engine)
    rows = chain(engine)

    with engine.begin() as connection:  # the newest entry removed
        connection.execute(sa.delete(AuditEntry).where(AuditEntry.sequence == 5))
    result = checked(engine, tmp_path)
    assert [(p.kind, p.sequence) for p in result.problems] == [("missing", 5)]
    assert "entry 5 removed" in result.problems[0].message

    with engine.begin() as connection:  # ... and the head rewound to hide it
        connection.execute(
            sa.update(AuditChainHead).values(sequence=4, head_hash=rows[3].entry_hash)
        )
    assert checked(engine, tmp_path).ok  # undetectable without a head recorded elsewhere

    with engine.begin() as connection:  # a head that is not the last entry's hash
        connection.execute(sa.update(AuditChainHead).values(head_hash="f" * 64))
    result = checked(engine, tmp_path)
    assert [(p.kind, p.sequence) for p in result.problems] == [("head", 4)]
    assert "head hash mismatch" in result.problems[0].message

    with engine.begin() as connection:  # two entries swapped
        connection.execute(sa.update(AuditChainHead).values(head_hash=rows[3].entry_hash))
        for old, new in ((2, -2), (3, 2), (-2, 3)):
            connection.execute(
                sa.update(AuditEntry).where(AuditEntry.sequence == old).values(sequence=new)
            )
    result = checked(engine, tmp_path)
    assert [(p.kind, p.sequence) for p in result.problems[:2]] == [
        ("reordered", 2),
        ("reordered", 3),
    ]
    assert result.first_break.entry_id == rows[2].id


def test_verify_finds_entries_appended_past_the_head(engine, tmp_path):
    """An entry inserted with a correct hash, but not through the head, is still found."""
    write_as_the_service_does(engine)
    rows = chain(engine)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    fields = dict(
        sequence=6,
        previous_hash=rows[-1].entry_hash,
        at=at,
        key_id=None,
        action="key.create",
        target_type="api_key",
        target_id=99,
        details={},
    )
    digest = hashlib.sha256(canonical_entry(**fields)).hexdigest()
    with engine.begin() as connection:
        connection.execute(sa.insert(AuditEntry).values(**fields, entry_hash=digest))
    result = checked(engine, tmp_path)
    assert [(p.kind, p.sequence) for p in result.problems] == [("head", 6)]


def test_the_migration_chains_existing_entries_and_round_trips(database_url, tmp_path):
    """Entries written before the chain existed are chained in id order; downgrading removes the
    chain (and the triggers) and keeps the entries."""
    upgrade(database_url, "0003")
    engine = make_engine(database_url)
    try:
        old_log = sa.table(
            "audit_log",
            sa.column("at", sa.DateTime(timezone=True)),
            sa.column("action", sa.String()),
            sa.column("target_type", sa.String()),
            sa.column("target_id", sa.Integer()),
            sa.column("details", sa.JSON()),
        )
        with engine.begin() as connection:
            connection.execute(
                old_log.insert(),
                [
                    {
                        "at": datetime(2026, 1, 2, 3, 4, 5, 6789 * i, tzinfo=UTC),
                        "action": f"old.{i}",
                        "target_type": "person",
                        "target_id": i,
                        "details": {"i": i, "text": "naïve"},
                    }
                    for i in range(3)
                ],
            )
        upgrade(database_url)
        rows = assert_contiguous(engine)
        assert [r.action for r in rows] == ["old.0", "old.1", "old.2"]
        write_as_the_service_does(engine)  # new entries continue the backfilled chain
        assert len(assert_contiguous(engine)) == 8
        assert checked(engine, tmp_path).ok

        downgrade(database_url, "0003")
        with engine.begin() as connection:
            assert "audit_chain" not in sa.inspect(connection).get_table_names()
            connection.execute(sa.text("UPDATE audit_log SET details = '{}' WHERE id = 1"))
            connection.execute(sa.text("DELETE FROM audit_log WHERE id = 2"))
        upgrade(database_url)
        assert len(assert_contiguous(engine)) == 7
        assert checked(engine, tmp_path).ok
    finally:
        engine.dispose()
