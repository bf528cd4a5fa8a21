"""Fixtures for the service's tests: a model checkpoint, a database on SQLite or PostgreSQL, and a
real `radmatch serve` process on a free port."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import save_checkpoint
from model.network import Embedder
from model.preprocess import Preprocessing
from tests.support.databases import new_postgres_database
from tests.support.servers import Server, prepare_database, service_env


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A seeded ResNet-18 embedder at 64 px: untrained, but a fixed, real model."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "checkpoint.pt"
    save_checkpoint(path, Embedder(), Preprocessing(input_size=64), metrics={"val_mAP": 0.0})
    return path


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
