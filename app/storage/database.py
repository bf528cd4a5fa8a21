"""Engines, sessions and the schema's version. Alembic (migrations/) is the only way the schema
changes; the service refuses to run on a database that is not at the code's head revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.audit.chain import chain_new_entries

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class SchemaOutOfDate(RuntimeError):
    """The database's schema revision is not the one this code was written for."""


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Threads of one server share the engine; SQLite itself serialises writers.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")  # readers do not wait for the writer
    cursor.execute("PRAGMA synchronous = FULL")  # an acknowledged upload survives a power cut
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    sessions = sessionmaker(engine, expire_on_commit=False)
    # Every audit entry takes its place in the hash chain as its session flushes.
    event.listen(sessions, "before_flush", chain_new_entries)
    return sessions


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def check_schema(engine: Engine) -> None:
    """Raise SchemaOutOfDate, saying what to run, unless the database is at the head revision."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    head = head_revision()
    if current != head:
        found = f"at revision {current}" if current else "empty (no radmatch schema)"
        raise SchemaOutOfDate(
            f"the database is {found}, but this radmatch needs revision {head}: "
            "run `radmatch db upgrade` first"
        )
