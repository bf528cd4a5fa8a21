"""Crash safety: bench/crash_harness.py for a few cycles on SQLite and on PostgreSQL. A real server
is killed with SIGKILL while clients upload and search, started again, and checked: nothing that
was acknowledged is lost, no file or row is left half-done, the index agrees with the database.
The long run is `.venv/bin/python -m bench.crash_harness --cycles 50`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.servers import load_bench

CYCLES = 3


def test_killed_server_loses_nothing_acknowledged_and_leaves_nothing_half_done(
    database_url: str, checkpoint: Path, tmp_path: Path
) -> None:
    harness = load_bench("crash_harness")
    # Server starts dominate the time: no extra start from the saved snapshot at the end
    # (test_faults.py starts servers from damaged and missing snapshots).
    summary = harness.run(
        database_url, tmp_path, CYCLES, seed=1, checkpoint=checkpoint, final_restart=False
    )
    report = json.dumps(summary, indent=2)
    assert summary["server_not_starting"] == 0, report
    assert summary["uploads_acknowledged"] > 0, f"nothing was uploaded: {report}"
    assert summary["cycles_killed_with_requests_in_flight"] > 0, f"no kill hit a request: {report}"
    assert summary["uploads_lost"] == 0, report
    assert summary["searches_lost"] == 0, report
    assert summary["orphan_files"] == 0, report
    assert summary["orphan_rows"] == 0, report
    assert summary["inconsistencies"] == 0, report
    assert summary["server_errors"] == 0, report
    assert summary["ok"], report
