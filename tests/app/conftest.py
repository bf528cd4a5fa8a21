"""Fixtures for the service's tests: a model checkpoint, a database on SQLite or PostgreSQL, and a
real `radmatch serve` process on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import torch

from app.database import make_engine, session_factory, upgrade
from app.keys import create_key
from model.checkpoint import save_checkpoint
from model.network import Embedder
from model.preprocess import Preprocessing
from training.cohorts import read_knee_manifest
from training.phantom.cohort import CohortSpec, synthesize

POSTGRES_ENV = "RADMATCH_TEST_POSTGRES_URL"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A seeded ResNet-18 embedder at 64 px: untrained, but a fixed, real model."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "checkpoint.pt"
    save_checkpoint(path, Embedder(), Preprocessing(input_size=64), metrics={"val_mAP": 0.0})
    return path


@pytest.fixture(scope="session")
def dicom_cohort(tmp_path_factory) -> list:
    """A phantom cohort with DICOM twins: 4 people, both knees, every visit."""
    out = tmp_path_factory.mktemp("dicom-cohort")
    manifest = synthesize(CohortSpec(out=out, subjects=4, seed=11, dicom=True), workers=1)
    return read_knee_manifest(manifest)


def postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(
            f"PostgreSQL not configured: set {POSTGRES_ENV}, e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        )
    return url


@pytest.fixture
def postgres_url():
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    admin = sa.make_url(postgres_admin_url())
    name = f"radmatch_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield admin.set(database=name).render_as_string(hide_password=False)
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'radmatch.db'}"
    return request.getfixturevalue("postgres_url")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A `radmatch serve` process and the keys to talk to it."""

    env: dict[str, str]
    log: Path
    admin_key: str = ""
    examiner_key: str = ""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str | None = None, **kwargs) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_key)

    def examiner(self) -> httpx.Client:
        return self.client(self.examiner_key)

    def start(self) -> Server:
        command = [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        """A graceful stop (SIGTERM), as an orchestrator does."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def service_env(data_dir: Path, database_url: str, checkpoint: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADMATCH_")}
    env.update(
        RADMATCH_DATA_DIR=str(data_dir),
        RADMATCH_DATABASE_URL=database_url,
        RADMATCH_INDEX_SYNC_SECONDS="0.5",
    )
    if checkpoint is not None:
        env["RADMATCH_CHECKPOINT"] = str(checkpoint)
    return env


def prepare_database(database_url: str) -> tuple[str, str]:
    """Migrate to the head revision; return an admin key and an examiner key."""
    upgrade(database_url)
    engine = make_engine(database_url)
    with session_factory(engine).begin() as session:
        _, admin = create_key(session, "admin in tests", "admin")
        _, examiner = create_key(session, "examiner in tests", "examiner")
    engine.dispose()
    return admin, examiner


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
