"""`radmatch demo`, the README's main command, end to end at the smoke preset: from nothing to a
serving service with a worker and an example search; then again, reusing everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.servers import REPO, free_port


def run_demo(data_dir: Path, port: int, log: Path) -> tuple[subprocess.Popen, str]:
    """Run the demo until it serves; return it, running, and its output so far."""
    command = [sys.executable, "-m", "cli", "demo", "--preset", "smoke"]
    command += ["--train-subjects", "8", "--gallery-subjects", "5"]
    command += ["--data-dir", str(data_dir), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADMATCH_")}  # defaults
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        output = log.read_text(errors="replace")
        if "Press Ctrl-C to stop." in output:
            return process, output
        if process.poll() is not None:
            raise AssertionError(f"the demo exited with {process.returncode}:\n{output}")
        time.sleep(0.5)
    process.kill()
    raise AssertionError(f"the demo did not finish starting:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)  # Ctrl-C
    return process.wait(timeout=60)


def test_demo_from_nothing_then_again(tmp_path):
    port = free_port()
    process, output = run_demo(tmp_path / "demo", port, tmp_path / "first.log")
    try:
        assert "5 people and 10 images added" in output
        assert "the right person, PH1000-" in output
        admin_key = output.split("Admin key (shown once; `radmatch keys create` makes more):\n")[1]
        admin_key = admin_key.split()[0]
        models = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/admin/models", headers={"X-API-Key": admin_key}
        )
        assert models.status_code == 200, models.text
        assert [m["active"] for m in models.json()] == [True]
        rebuild = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/admin/index/rebuild",
            headers={"X-API-Key": admin_key},
        )
        assert rebuild.status_code == 202  # the demo's in-process worker runs it
        job_url = f"http://127.0.0.1:{port}/api/v1/admin/jobs/{rebuild.json()['id']}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = httpx.get(job_url, headers={"X-API-Key": admin_key}).json()
            if job["status"] not in ("queued", "running"):
                break
            time.sleep(0.3)
        assert job["status"] == "succeeded", job
    finally:
        assert stop(process) == 0

    process, output = run_demo(tmp_path / "demo", port, tmp_path / "second.log")
    try:
        assert output.count("reusing") == 3  # both cohorts and the model
        assert "0 people and 0 images added; 10 images were already stored" in output
        assert "the right person, PH1000-" in output
    finally:
        assert stop(process) == 0
