"""Ingest throughput: images per second through the HTTP API (upload, decode, embed, store, index)
with concurrent clients, against the raw batched network forward measured in the same run.

A real `radmatch serve` on the embedded defaults (SQLite, or the empty database given) and 512 x
512 16-bit radiographs, PNG and DICOM, made before the clock starts, request bodies and all, so
that the clients only send: they share the server's CPUs here, where a lab's would not, and the
CPU time each side used is reported. Prints one JSON object.

    .venv/bin/python -m bench.ingest                    # the paper's 256 px model, 8 clients
    .venv/bin/python -m bench.ingest --input-size 128 --flip-tta   # the cpu preset's model
    .venv/bin/python -m bench.ingest --database-url postgresql+psycopg://postgres@127.0.0.1/EMPTY_DB
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.service_bench import (
    API,
    baseline_models,
    forward_seconds,
    histogram_means,
    multipart_body,
    new_database,
    percentile,
    process_cpu_seconds,
    radiograph_pixels,
    start_server,
)
from model.threads import available_cpus
from tests.support.images import phantom_dicom, png_bytes
from tests.support.servers import seeded_checkpoint

TARGET_RATIO = 0.75


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--images", type=int, default=192, help="per format")
    parser.add_argument("--formats", default="png,dicom")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--flip-tta", action="store_true", help="a model that embeds each image and its mirror"
    )
    parser.add_argument(
        "--database-url", default=None, help="an empty database (default: a new SQLite file)"
    )
    parser.add_argument(
        "--backend", default="auto", help="RADMATCH_INFERENCE_BACKEND, server and baseline alike"
    )
    parser.add_argument(
        "--threads", type=int, default=available_cpus(), help="RADMATCH_THREADS, both alike"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    formats = args.formats.split(",")
    rng = np.random.default_rng(args.seed)
    result: dict = {
        "bench": "ingest",
        "cpu_cores": os.cpu_count(),
        "threads": args.threads,
        "backend": args.backend,
        "input_size": args.input_size,
        "flip_tta": args.flip_tta,
        "image": "512 x 512, 16-bit",
        "clients": args.clients,
        "target_ratio": TARGET_RATIO,
    }
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        checkpoint = seeded_checkpoint(scratch / "model.pt", args.input_size, args.flip_tta)
        model, reference = baseline_models(checkpoint, args.backend, args.threads)
        uploads = {
            name: [
                multipart_body(f"{i}", encode(name, radiograph_pixels(rng), i))
                for i in range(args.images + 8)
            ]
            for name in formats
        }
        database_url, key = new_database(scratch, args.database_url)
        result["database"] = database_url.split(":", 1)[0].split("+", 1)[0]
        # The baseline: the network alone on the largest batch the clients can form.
        forward = [forward_seconds(model, args.clients, repeats=5)]
        torch_forward = forward_seconds(reference, args.clients, repeats=5)
        server = start_server(
            scratch,
            database_url,
            key,
            checkpoint,
            inference_backend=args.backend,
            threads=str(args.threads),
        )
        try:
            with server.admin() as client:
                people = [
                    client.post(f"{API}/people", json={"external_ref": f"B-{i}"}).json()["id"]
                    for i in range(args.clients * 4)
                ]
                for name in formats:
                    warm_up, timed = uploads[name][:8], uploads[name][8:]
                    send_all(server, warm_up, people, args.clients)
                    result[name] = send_all(server, timed, people, args.clients)
                metrics = client.get("/metrics").text
        finally:
            server.stop()
        forward.append(forward_seconds(model, args.clients, repeats=5))
    seconds = sum(forward) / len(forward)
    raw = args.clients / seconds
    result["raw_forward"] = {
        "batch": args.clients,
        "ms_per_batch": round(seconds * 1e3, 1),
        "ms_per_batch_before_and_after": [round(f * 1e3, 1) for f in forward],
        "images_per_s": round(raw, 1),
        "backend_in_use": model.backend,
        "torch_eager_images_per_s": round(args.clients / torch_forward, 1),
    }
    for name in formats:
        result[name]["ratio_to_raw_forward"] = round(result[name]["images_per_s"] / raw, 3)
        result[name]["met"] = result[name]["ratio_to_raw_forward"] >= TARGET_RATIO
    result["server"] = {
        "mean_embed_batch": histogram_means(metrics, "radmatch_embed_batch_images")["all"],
        "mean_stage_ms": histogram_means(metrics, "radmatch_stage_seconds", "stage"),
    }
    print(json.dumps(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def encode(name: str, pixels: np.ndarray, number: int) -> bytes:
    if name == "png":
        return png_bytes(pixels)
    return phantom_dicom(pixels, f"bench-{number}", site="bench")


def send_all(server, uploads: list[tuple[bytes, str]], people: list[int], clients: int) -> dict:
    """Upload everything from `clients` threads at once; each upload must be stored (201)."""
    latencies: list[float] = []
    failures: list[str] = []
    start = threading.Barrier(clients + 1)

    def client_thread(shard: list[tuple[int, tuple[bytes, str]]]) -> None:
        with server.admin() as client:
            start.wait()
            for number, (body, content_type) in shard:
                person = people[number % len(people)]
                began = time.perf_counter()
                response = client.post(
                    f"{API}/people/{person}/images",
                    content=body,
                    headers={"Content-Type": content_type},
                )
                latencies.append(time.perf_counter() - began)
                if response.status_code != 201:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    numbered = list(enumerate(uploads))
    threads = [
        threading.Thread(target=client_thread, args=(numbered[i::clients],)) for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    server_cpu, client_cpu = process_cpu_seconds(server.process.pid), time.process_time()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    server_cpu = process_cpu_seconds(server.process.pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    if failures:
        raise SystemExit(f"{len(failures)} uploads failed, first: {failures[0]}")
    return {
        "images": len(uploads),
        "mean_bytes": round(sum(len(body) for body, _ in uploads) / len(uploads)),
        "seconds": round(wall, 2),
        "images_per_s": round(len(uploads) / wall, 2),
        "latency_ms_p50": round(1e3 * percentile(latencies, 50), 1),
        "latency_ms_p95": round(1e3 * percentile(latencies, 95), 1),
        # CPU time per upload, all threads: the server's, and the clients' on the same CPUs.
        "server_cpu_ms_per_image": round(1e3 * server_cpu / len(uploads), 1),
        "client_cpu_ms_per_image": round(1e3 * client_cpu / len(uploads), 1),
    }


if __name__ == "__main__":
    main()
