"""Does the service rank as `radmatch evaluate` does? Ingest a cohort's baseline visits with
`radmatch ingest`, start `radmatch serve`, search every follow-up image over HTTP, and compare the
CMC top-1 by interval with what `radmatch evaluate` reports for the same checkpoint and cohort.
Prints one JSON object and writes docs/results/service.md.

    .venv/bin/python -m bench.service_agreement --checkpoint runs/cpu-preset/checkpoint.pt \\
        --manifest data/phantom-1000/manifest.csv --work runs/service-agreement
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx

from model.checkpoint import load_checkpoint
from training.cohorts import read_knee_manifest
from training.protocol import interval_label, split_gallery_queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("runs/service-agreement"))
    parser.add_argument("--docs", type=Path, default=Path("docs/results"))
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADMATCH_")}
    env.update(RADMATCH_DATA_DIR=str(args.work / "data"), RADMATCH_CHECKPOINT=str(args.checkpoint))
    radmatch = [sys.executable, "-m", "cli"]

    def run(*command: str) -> str:
        return subprocess.run(
            [*radmatch, *command], env=env, check=True, capture_output=True, text=True
        ).stdout

    run("db", "upgrade")
    key = run("keys", "create", "--role", "examiner", "--name", "agreement").splitlines()[-1]
    start = time.perf_counter()
    run("ingest", "--manifest", str(args.manifest), "--baseline-only")
    ingest_seconds = time.perf_counter() - start

    evaluation = args.work / "evaluation"
    run("evaluate", "--checkpoint", str(args.checkpoint), "--manifest", str(args.manifest),
        "--out", str(evaluation))  # fmt: skip
    evaluated = json.loads((evaluation / "metrics.json").read_text())["intervals"]

    api, latencies = search_follow_ups(radmatch, env, key, args.manifest)
    rows = {
        name: {
            "queries": len(hits),
            "api_top1": sum(hits) / len(hits),
            "evaluate_top1": evaluated[name]["cmc"]["1"],
        }
        for name, hits in ((name, api[name]) for name in evaluated)
    }
    checkpoint = load_checkpoint(args.checkpoint)
    result = {
        "date": date.today().isoformat(),
        "checkpoint": str(args.checkpoint),
        "checkpoint_sha256": checkpoint.sha256,
        "checkpoint_metrics": checkpoint.info.get("metrics", {}),
        "manifest": str(args.manifest),
        "ingest_seconds": round(ingest_seconds, 1),
        "search_latency_ms_median": round(1000 * statistics.median(latencies), 1),
        "intervals": rows,
        "equal": all(abs(r["api_top1"] - r["evaluate_top1"]) < 1e-9 for r in rows.values()),
    }
    print(json.dumps(result, indent=2))
    write_report(args.docs / "service.md", result, sys.argv[1:])


def search_follow_ups(radmatch, env, key, manifest: Path):
    """Top-1 hits by interval ("12", ..., "all"), searching each follow-up over HTTP."""
    records = read_knee_manifest(manifest)
    _, queries = split_gallery_queries(records)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [*radmatch, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    hits: dict[str, list[bool]] = {}
    latencies = []
    try:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=60
        )
        wait_until_ready(client)
        for months, indices in queries.items():
            for index in indices:
                record = records[index]
                started = time.perf_counter()
                response = client.post(
                    "/api/v1/search",
                    files={"file": (record.path.name, record.path.read_bytes())},
                    data={"k": 1, "pixel_spacing_mm": record.pixel_spacing_mm},
                )
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
                top = response.json()["candidates"][0]["external_ref"]
                hit = top == record.person_id
                hits.setdefault(str(months), []).append(hit)
                hits.setdefault("all", []).append(hit)
    finally:
        server.terminate()
        server.wait()
    return hits, latencies


def wait_until_ready(client: httpx.Client) -> None:
    for _ in range(600):
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not become ready")


def write_report(path: Path, result: dict, argv: list[str]) -> None:
    rows = result["intervals"]
    lines = [
        "# The service ranks as the evaluation does",
        "",
        f"Measured {result['date']} on this project's 2-core CPU machine, with the checkpoint "
        f"`{result['checkpoint']}` (sha256 {result['checkpoint_sha256'][:12]}..., validation "
        f"metrics {result['checkpoint_metrics']}). The baseline visits of "
        f"`{result['manifest']}` were ingested with `radmatch ingest --baseline-only` "
        f"({result['ingest_seconds']} s), then every follow-up image was searched through "
        "`POST /api/v1/search` on a running `radmatch serve` (median latency "
        f"{result['search_latency_ms_median']} ms per search, one client). CMC top-1 from the API "
        "beside what `radmatch evaluate` reports for the same checkpoint and cohort:",
        "",
        "```",
        ".venv/bin/python -m bench.service_agreement " + " ".join(argv),
        "```",
        "",
        "| interval | queries | API CMC top-1 | evaluate CMC top-1 |",
        "|---|---|---|---|",
        *(
            f"| {interval_label(name)} | {r['queries']} | {100 * r['api_top1']:.2f} "
            f"| {100 * r['evaluate_top1']:.2f} |"
            for name, r in rows.items()
        ),
        "",
        f"Equal at every interval: {'yes' if result['equal'] else 'NO'}.",
        "",
        "```json",
        json.dumps(result, indent=2),
        "```",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
