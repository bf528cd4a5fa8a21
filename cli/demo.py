"""`radmatch demo`: the whole service on the embedded defaults, from nothing, in one command.

It generates two phantom cohorts (one to train on, one whose people are the known gallery), trains
the embedder if there is no model yet, loads the gallery's first visits into the case database,
starts the service with a job worker, and searches it once with a later radiograph of a gallery
person, as an examiner would. Everything it makes is kept under --data-dir and reused, so a second
run starts in seconds."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cli.cohorts import synthesize_cohort, train_embedder
from cli.common import Subcommands, database_sessions, read_cohort_records
from cli.database import upgrade_schema
from cli.gallery import ingest, print_ranking

if TYPE_CHECKING:
    from app.core.config import Settings


def add_commands(commands: Subcommands) -> None:
    demo = commands.add_parser(
        "demo", help="phantom cohorts, a trained model, a gallery, and the service with a worker"
    )
    demo.add_argument("--data-dir", type=Path, default=Path("data/demo"), help="kept and reused")
    demo.add_argument("--preset", default="cpu", help="training preset (default: cpu)")
    demo.add_argument("--train-subjects", type=int, default=100, help="people to train on")
    demo.add_argument("--gallery-subjects", type=int, default=40, help="known people")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(run=_demo)


@dataclass(frozen=True)
class DemoPlan:
    data_dir: Path
    preset: str
    train_subjects: int
    gallery_subjects: int
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data(self) -> Path:
        return self.data_dir.resolve()

    @property
    def train_cohort(self) -> Path:
        return self.data / "phantom-train"

    @property
    def gallery_cohort(self) -> Path:
        return self.data / "phantom-gallery"

    @property
    def model_run(self) -> Path:
        return self.data / "model"

    @property
    def checkpoint(self) -> Path:
        return self.model_run / "checkpoint.pt"

    def settings(self) -> Settings:
        """The service's settings: its data and the demo's model under data_dir, the rest from
        RADMATCH_* as usual."""
        from app.core.config import Settings

        return Settings(data_dir=self.data / "service", checkpoint=self.checkpoint)


def _demo(args: argparse.Namespace) -> int:
    plan = DemoPlan(
        args.data_dir, args.preset, args.train_subjects, args.gallery_subjects, args.host, args.port
    )
    return run_demo(plan)


def run_demo(plan: DemoPlan) -> int:
    _make_cohorts(plan)
    _make_model(plan)
    settings = plan.settings()
    admin_key, examiner_key = _make_gallery(plan, settings)
    return _serve_until_stopped(plan, settings, admin_key, examiner_key)


def _make_cohorts(plan: DemoPlan) -> None:
    _step("1/5 phantom cohorts: people to train on, and other people as the known gallery")
    for cohort, subjects, seed, dicom in (
        (plan.train_cohort, plan.train_subjects, 2000, False),
        (plan.gallery_cohort, plan.gallery_subjects, 1000, True),
    ):
        if (cohort / "manifest.csv").exists():
            print(f"reusing {cohort}")
        else:
            synthesize_cohort(cohort, subjects, seed, dicom)


def _make_model(plan: DemoPlan) -> None:
    _step(f"2/5 the embedder (ResNet-18, AdaTriplet-AM, preset {plan.preset})")
    if plan.checkpoint.exists():
        print(f"reusing {plan.checkpoint}")
    else:
        train_embedder(plan.train_cohort / "manifest.csv", plan.model_run, plan.preset)


def _make_gallery(plan: DemoPlan, settings: Settings) -> tuple[str, str]:
    """The case database with the gallery people's first visits; an admin and an examiner key."""
    _step("3/5 the case database: schema, and the gallery people's first visits")
    upgrade_schema(settings)
    manifest = plan.gallery_cohort / "manifest.csv"
    records, _ = read_cohort_records("ingest", manifest, None)
    ingest(settings, records, baseline_only=True)
    return _new_key(settings, "admin", "demo admin"), _new_key(
        settings, "examiner", "demo examiner"
    )


def _serve_until_stopped(
    plan: DemoPlan, settings: Settings, admin_key: str, examiner_key: str
) -> int:
    _step(f"4/5 the service at {plan.url}, with a job worker")
    # Stop on Ctrl-C and on SIGTERM, even when started from a shell that ignores SIGINT (as a
    # background job is): an explicit handler replaces the inherited "ignore".
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _interrupt)
    command = [sys.executable, "-m", "cli", "serve", "--worker"]
    server = subprocess.Popen(
        command + ["--host", plan.host, "--port", str(plan.port)], env=_service_env(settings)
    )
    try:
        _wait_until_ready(plan.url, server)
        _step("5/5 an example search: a later radiograph of a gallery person")
        _example_search(plan.url, examiner_key, plan.gallery_cohort / "manifest.csv")
        print(
            f"\nThe service runs at {plan.url} (API documentation at {plan.url}/docs).\n"
            f"Admin key (shown once; `radmatch keys create` makes more):\n  {admin_key}\n"
            f"Examiner key:\n  {examiner_key}\n"
            f"Search from another terminal:\n"
            f"  RADMATCH_API_KEY={examiner_key} .venv/bin/radmatch search FILE\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()


def _service_env(settings: Settings) -> dict[str, str]:
    """This process's environment, plus what the demo chose: the service reads its settings from
    RADMATCH_*."""
    return {
        **os.environ,
        "RADMATCH_DATA_DIR": str(settings.data_dir),
        "RADMATCH_CHECKPOINT": str(settings.checkpoint),
    }


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _new_key(settings: Settings, role: str, name: str) -> str:
    from app.access.keys import create_key
    from app.audit.entries import command_line_actor

    with database_sessions("demo", settings).begin() as session:
        _, key = create_key(session, name, role, by=command_line_actor("radmatch demo"))
    return key


def _wait_until_ready(url: str, server: subprocess.Popen, timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"radmatch demo: the service exited with status {server.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"radmatch demo: the service at {url} did not become ready")


def _example_search(url: str, key: str, manifest: Path) -> None:
    """Search with a gallery person's DICOM from four years after the gallery image."""
    import httpx

    from training.cohorts import read_knee_manifest

    records = read_knee_manifest(manifest)
    query = next(r for r in records if r.visit_months == 48 and r.dicom_path is not None)
    print(f"query: {query.dicom_path.name} of {query.person_id}, {query.side} knee, 4 years later")
    with query.dicom_path.open("rb") as file:
        response = httpx.post(
            f"{url}/api/v1/search",
            headers={"X-API-Key": key},
            files={"file": (query.dicom_path.name, file)},
            data={"k": 5},
            timeout=120,
        )
    response.raise_for_status()
    answer = response.json()
    print_ranking(answer)
    ranks = [c["rank"] for c in answer["candidates"] if c["external_ref"] == query.person_id]
    verdict = f"ranked {ranks[0]}" if ranks else "not among the first 5"
    print(f"the right person, {query.person_id}, is {verdict}")
