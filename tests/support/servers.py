"""A real `radmatch serve` process for the tests, and what it needs: a free port, an environment,
a migrated database with keys, a seeded model; waiting for its jobs and models; the bench
harnesses tests reuse."""

from __future__ import annotations

import importlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch

from app.access.keys import create_key
from app.storage.database import make_engine, session_factory, upgrade
from model.checkpoint import save_checkpoint
from model.network import Embedder
from model.preprocess import Preprocessing
from training.calibration.fitting import calibrate_checkpoint, manifest_calibration_records

REPO = Path(__file__).resolve().parents[2]
API = "/api/v1"


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
    # Chosen by the server when it starts (it binds port 0 and names the port in its log): a port
    # picked here could be taken by another test's server before this one binds it, and then this
    # one's health check would be answered by the other.
    port: int = 0
    # How `radmatch` is run: a benchmark may put a wrapper in front (bench/heap_trace.py).
    launcher: tuple[str, ...] = (sys.executable, "-m", "cli")
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

    def new_key(self, name: str, role: str) -> str:
        """Another key, made in the server's database as `radmatch keys create` would."""
        engine = make_engine(self.env["RADMATCH_DATABASE_URL"])
        with session_factory(engine).begin() as session:
            _, key = create_key(session, name, role)
        engine.dispose()
        return key

    def wait_for_job(self, job_id: int, statuses=("succeeded",), timeout=300.0) -> dict:
        """The job once it is in one of `statuses`; failing as soon as it failed or was
        cancelled otherwise."""
        deadline = time.monotonic() + timeout
        with self.admin() as client:
            while time.monotonic() < deadline:
                job = client.get(f"{API}/admin/jobs/{job_id}").json()
                if job["status"] in statuses:
                    return job
                if job["status"] in ("failed", "cancelled"):
                    raise AssertionError(f"job {job_id} {job['status']}: {job}")
                time.sleep(0.3)
        raise AssertionError(f"job {job_id} is still {job['status']}: {job}")

    def wait_until_serving(self, version_id: int, timeout=120.0) -> None:
        """Until the server serves this model version with a ready index."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            checks = self.client().get("/readyz").json()["checks"]
            if checks.get("model_version") == version_id and checks.get("index") == "ok":
                return
            time.sleep(0.3)
        raise AssertionError(f"the server does not serve model version {version_id}: {checks}")

    def start(self) -> Server:
        command = [*self.launcher, "serve", "--port", "0"]
        logged_before = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.log.read_text()}")
            self.port = bound_port(self.log, logged_before)
            try:
                if self.port and httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        terminate(self.process, timeout=30)


def bound_port(log: Path, offset: int) -> int:
    """The port uvicorn says it listens on, in what the log gained after `offset`; 0 until then."""
    with open(log, "rb") as text:
        text.seek(offset)
        found = re.search(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)", text.read())
    return int(found[1]) if found else 0


@dataclass
class WorkerProcess:
    """A `radmatch worker` process."""

    env: dict[str, str]
    log: Path
    once: bool = False
    process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        command = [sys.executable, "-m", "cli", "worker"] + (["--once"] if self.once else [])
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        return self

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to say anything."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        terminate(self.process, timeout=60)


def terminate(process: subprocess.Popen | None, timeout: float) -> None:
    """A graceful stop (SIGTERM), as an orchestrator does; SIGKILL once `timeout` has passed."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def service_env(data_dir: Path, database_url: str, checkpoint: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADMATCH_")}
    env.update(
        RADMATCH_DATA_DIR=str(data_dir),
        RADMATCH_DATABASE_URL=database_url,
        RADMATCH_INDEX_SYNC_SECONDS="0.5",
        RADMATCH_JOB_HEARTBEAT_SECONDS="0.5",
        RADMATCH_JOB_STALE_SECONDS="4",
        RADMATCH_WORKER_POLL_SECONDS="0.2",
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


def new_server(root: Path, database_url: str, checkpoint: Path | None, **settings: str) -> Server:
    """A running server on this database, migrated and given its keys here; its files and log
    under `root`, with these RADMATCH_<NAME> settings."""
    admin, examiner = prepare_database(database_url)
    env = service_env(root / "data", database_url, checkpoint)
    env.update({f"RADMATCH_{name.upper()}": value for name, value in settings.items()})
    return Server(env=env, log=root / "server.log", admin_key=admin, examiner_key=examiner).start()


def seeded_checkpoint(path: Path, input_size: int = 64, flip_tta: bool = False) -> Path:
    """A seeded ResNet-18 embedder: untrained, but a fixed, real model that costs what a trained
    one costs to run."""
    torch.manual_seed(0)
    prep = Preprocessing(input_size=input_size, flip_tta=flip_tta)
    save_checkpoint(path, Embedder(), prep, metrics={"val_mAP": 0.0})
    return path


def calibrated(checkpoint: Path, manifest: Path) -> Path:
    """The checkpoint, calibrated in place on a phantom manifest's people."""
    records, source = manifest_calibration_records(manifest)
    calibrate_checkpoint(checkpoint, records, source=source)
    return checkpoint


def load_bench(name: str):
    """A module of bench/."""
    return importlib.import_module(f"bench.{name}")
