"""Fixtures for the command's tests that run beside a real `radmatch serve`: a model checkpoint,
a migrated database and the server."""

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


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'radmatch.db'}"
    else:
        with new_postgres_database() as url:
            yield url


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
