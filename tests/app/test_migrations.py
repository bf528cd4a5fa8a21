"""The schema's migrations on SQLite and PostgreSQL, the service's refusal of an old schema, and
the `radmatch db` and `radmatch keys` commands as an operator runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.access.keys import authenticate, create_key
from app.core.config import Settings
from app.serving.service import Service
from app.storage.database import (
    SchemaOutOfDate,
    downgrade,
    head_revision,
    make_engine,
    session_factory,
    upgrade,
)
from app.storage.tables import Base
from tests.support.servers import REPO, Server, free_port, service_env

RADMATCH_TABLES = set(Base.metadata.tables)
CLI_TIMEOUT_S = 120  # a subprocess imports torch; the machine may be busy


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return set(sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def schema_differences(url: str, metadata: sa.MetaData) -> list:
    """What alembic's autogenerate would change to bring the database to `metadata`."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def key_rows(listing: str) -> dict[str, list[str]]:
    """`radmatch keys list` as rows (id, role, name, state), by name."""
    rows = [line.split("\t") for line in listing.splitlines()]
    return {row[2]: row for row in rows if len(row) == 4}


def radmatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `radmatch` command as a separate process, as an operator would."""
    command = [sys.executable, "-m", "cli", *args]
    try:
        return subprocess.run(
            command, env=env, cwd=REPO, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"`radmatch {' '.join(args)}` did not exit within {CLI_TIMEOUT_S} s: {error}")


def test_upgrade_downgrade_and_upgrade_again(database_url: str) -> None:
    """The migration creates exactly the ORM's tables, and a downgrade removes all of them."""
    assert table_names(database_url) == set()
    assert current_revision(database_url) is None

    upgrade(database_url)
    assert table_names(database_url) == RADMATCH_TABLES | {"alembic_version"}
    assert current_revision(database_url) == head_revision()

    downgrade(database_url, "base")
    assert table_names(database_url) <= {"alembic_version"}
    assert current_revision(database_url) is None

    upgrade(database_url)
    assert table_names(database_url) == RADMATCH_TABLES | {"alembic_version"}
    assert current_revision(database_url) == head_revision()


def test_migrated_schema_matches_the_orm_metadata(database_url: str) -> None:
    """A model changed without a migration would show up here as a difference."""
    upgrade(database_url)
    assert schema_differences(database_url, Base.metadata) == []

    # The comparison does see drift: the same metadata plus one column is a difference.
    drifted = sa.MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["people"].append_column(sa.Column("nickname", sa.String(50)))
    differences = schema_differences(database_url, drifted)
    assert [(d[0], d[2], d[3].name) for d in differences] == [("add_column", "people", "nickname")]


def test_service_refuses_an_empty_or_downgraded_database(
    database_url: str, tmp_path: Path, checkpoint: Path
) -> None:
    """Serving on a schema the code was not written for would corrupt evidence; say what to run."""
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, checkpoint=checkpoint
    )
    with pytest.raises(SchemaOutOfDate, match="radmatch db upgrade"):
        Service.open(settings)

    upgrade(database_url)
    downgrade(database_url, "base")
    with pytest.raises(SchemaOutOfDate, match="radmatch db upgrade"):
        Service.open(settings)
    assert table_names(database_url) <= {"alembic_version"}  # refusing changed nothing


def test_serve_on_an_unmigrated_database_exits_with_what_to_run(
    database_url: str, tmp_path: Path, checkpoint: Path
) -> None:
    """An operator who forgot the migration gets one line saying what to do, not a traceback."""
    env = service_env(tmp_path / "data", database_url, checkpoint)
    served = radmatch(env, "serve", "--port", str(free_port()))
    output = served.stdout + served.stderr
    assert served.returncode != 0, output
    assert "radmatch db upgrade" in output
    assert "Traceback" not in output
    assert table_names(database_url) & RADMATCH_TABLES == set()  # serve never migrates


def test_keys_are_created_listed_and_revoked_from_the_command_line(
    database_url: str, tmp_path: Path, checkpoint: Path
) -> None:
    """The key is printed once, never listed, and a revoked key is refused by a running server."""
    env = service_env(tmp_path / "data", database_url, checkpoint)
    upgraded = radmatch(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert current_revision(database_url) == head_revision()

    name = "Dr. Ada Example"
    created = radmatch(env, "keys", "create", "--role", "admin", "--name", name)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("rmk_")
    secret = key.split("_", 2)[2]  # the part after rmk_<prefix>_; it may itself contain "_"

    listed = radmatch(env, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert name in key_rows(listed.stdout), listed.stdout
    key_id, role, _, state = key_rows(listed.stdout)[name]
    assert (role, state) == ("admin", "active")
    assert key not in listed.stdout
    assert secret not in listed.stdout

    server = Server(env=env, log=tmp_path / "server.log", admin_key=key)
    try:
        server.start()
        with server.admin() as client:
            assert client.get("/api/v1/people").status_code == 200  # the key works before

            revoked = radmatch(env, "keys", "revoke", key_id)
            assert revoked.returncode == 0, revoked.stderr

            response = client.get("/api/v1/people")
            assert response.status_code == 401, response.text
    finally:
        server.stop()

    listed = radmatch(env, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert key_rows(listed.stdout)[name][3].startswith("revoked"), listed.stdout
    assert key not in listed.stdout


def test_every_created_key_authenticates(database_url: str) -> None:
    """Keys are random: many of them, so that no shape of random part (e.g. one with "_") fails."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with session_factory(engine).begin() as session:
            created = [create_key(session, f"key {i}", "examiner") for i in range(64)]
        with session_factory(engine)() as session:
            refused = [key for _, key in created if authenticate(session, key) is None]
            assert refused == [], f"{len(refused)} of {len(created)} new keys are refused"
            assert authenticate(session, created[0][1] + "x") is None  # a wrong key is refused
    finally:
        engine.dispose()
