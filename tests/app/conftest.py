"""Fixtures for the service's tests: a model checkpoint, a database on SQLite or PostgreSQL, and a
real `radmatch serve` process on a free port: one per test, or one a module's tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import new_postgres_database
from tests.support.servers import Server, new_server, seeded_checkpoint


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A seeded ResNet-18 embedder at 64 px: untrained, but a fixed, real model."""
    return seeded_checkpoint(tmp_path_factory.mktemp("model") / "checkpoint.pt")


@pytest.fixture
def postgres_url():
    """A new, empty PostgreSQL database for one test."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'radmatch.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def server(tmp_path, database_url, checkpoint) -> Iterator[Server]:
    """A running server on a migrated database, stopped after the test."""
    running = new_server(tmp_path, database_url, checkpoint)
    yield running
    running.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(request, tmp_path_factory) -> Iterator[str]:
    """A new database for a module's shared server: a SQLite file, or a PostgreSQL database
    dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('shared-db') / 'radmatch.db'}"
        return
    with new_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def shared_server(module_database_url, tmp_path_factory, checkpoint) -> Iterator[Server]:
    """One running server on each database, shared by a module's tests: starting a server takes
    seconds, most tests a fraction of one. For tests that make their own people and cases and
    never count what the others made."""
    running = new_server(tmp_path_factory.mktemp("shared"), module_database_url, checkpoint)
    yield running
    running.stop()
