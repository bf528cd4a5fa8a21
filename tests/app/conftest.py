"""Fixtures for the service's tests: a model checkpoint, a database on SQLite or PostgreSQL, and a
real `radmatch serve` process on a free port."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch
from servers import Server, prepare_database, service_env

from model.checkpoint import save_checkpoint
from model.network import Embedder
from model.preprocess import Preprocessing

POSTGRES_ENV = "RADMATCH_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A seeded ResNet-18 embedder at 64 px: untrained, but a fixed, real model."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "checkpoint.pt"
    save_checkpoint(path, Embedder(), Preprocessing(input_size=64), metrics={"val_mAP": 0.0})
    return path


def postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(
            f"PostgreSQL not configured: set {POSTGRES_ENV}, e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        )
    return url


@contextmanager
def new_postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    admin = sa.make_url(postgres_admin_url())
    name = f"radmatch_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


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
def server(tmp_path, database_url, checkpoint):
    """A running server on a migrated database, stopped after the test."""
    admin, examiner = prepare_database(database_url)
    running = Server(
        env=service_env(tmp_path / "data", database_url, checkpoint),
        log=tmp_path / "server.log",
        admin_key=admin,
        examiner_key=examiner,
    )
    running.start()
    yield running
    running.stop()
