"""Load: concurrent clients uploading and searching for minutes on end against a real `radmatch
serve`, to show that nothing fails and that the server's memory does not grow. Prints one JSON
object.

The server runs on the embedded defaults (SQLite, files under a scratch directory) with a seeded
model; a small gallery is uploaded through the API first. Then each client, one request at a time
(so at most --clients are in flight), sends either an upload of a new, distinct radiograph to a
gallery person or a search with a query radiograph, at random in the --upload-share proportion,
until --duration has passed. Reported: requests by kind, errors (any answer other than 2xx, or a
transport error), throughput, latency percentiles by kind, and the server process's resident
memory sampled every --sample-seconds (all of it, its anonymous part and its file-backed part),
each with the least-squares slope of the second half of the run in MB per minute, set against what
the uploads' index entries account for. With --trace-heap the server runs under
bench/heap_trace.py, and Python's own allocations are reported beside: growth there is a leak in
Python objects, growth only in RSS is below them (allocator, libraries).

Uploads are uncompressed 512 x 512 16-bit DICOM files: a few made before the clock starts, each
upload a copy of one with a counter stamped into its pixels, so that every upload is a different
image without the clients spending the CPU on encoding. Queries are PNGs. The exit status is 1
when any request failed or the memory grew.

    .venv/bin/python -m bench.load                              # 32 clients for 5 minutes
    .venv/bin/python -m bench.load --clients 8 --duration 20    # a quick look
    .venv/bin/python -m bench.load --trace-heap                 # Python's heap traced beside
    OMP_WAIT_POLICY=ACTIVE .venv/bin/python -m bench.load --backend torch   # threads spinning
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from bench.service_bench import (
    API,
    SIDE,
    Server,
    new_database,
    percentile,
    radiograph_pixels,
    start_server,
)
from model.inference import EmbeddingModel
from tests.support.images import phantom_dicom, png_bytes
from tests.support.servers import seeded_checkpoint

KINDS = ("upload", "search")
PIXEL_BYTES = SIDE * SIDE * 2


class DistinctUploads:
    """Distinct DICOM files, cheaply: an uncompressed file's pixel data is its last bytes, so a
    copy with a counter written into its pixels (four 16-bit words, plus a bright block whose place
    the counter decides, so that the embeddings differ too) is a new image."""

    def __init__(self, bases: list[bytes]):
        for base in bases:
            if len(base) < PIXEL_BYTES:
                raise ValueError("not an uncompressed 512 x 512 16-bit DICOM file")
        self.bases = bases
        self.count = 0
        self.lock = threading.Lock()

    def next(self) -> bytes:
        with self.lock:
            number = self.count
            self.count += 1
        data = bytearray(self.bases[number % len(self.bases)])
        pixels = np.frombuffer(data, dtype="<u2", offset=len(data) - PIXEL_BYTES)
        pixels = pixels.reshape(SIDE, SIDE)
        serial = number // len(self.bases)
        pixels[0, :4] = [(serial >> shift) & 0xFFFF for shift in (0, 16, 32, 48)]
        y, x = (serial * 37) % (SIDE - 32), (serial * 101) % (SIDE - 32)
        pixels[y : y + 32, x : x + 32] = 60000
        return bytes(data)


@dataclass
class Tally:
    """One client's requests: latencies of the answered ones by kind, and the failures."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: {k: {} for k in KINDS})
    errors: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})


def client(
    url: str,
    key: str,
    deadline: float,
    seed: int,
    people: list[int],
    queries: list[bytes],
    uploads: DistinctUploads,
    upload_share: float,
    k: int,
    tally: Tally,
) -> None:
    """Requests one after another until the deadline."""
    rng = random.Random(seed)
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=300) as http:
        while time.monotonic() < deadline:
            if rng.random() < upload_share:
                kind = "upload"
                path = f"{API}/people/{rng.choice(people)}/images"
                files = {"file": ("upload.dcm", uploads.next(), "application/dicom")}
                form = {}
            else:
                kind = "search"
                path = f"{API}/search"
                files = {"file": ("query.png", rng.choice(queries), "image/png")}
                form = {"k": str(k)}
            began = time.perf_counter()
            try:
                response = http.post(path, files=files, data=form)
            except httpx.HTTPError as error:
                tally.errors[kind].append(f"{type(error).__name__}: {error}")
                continue
            elapsed = time.perf_counter() - began
            status = response.status_code
            tally.statuses[kind][status] = tally.statuses[kind].get(status, 0) + 1
            if 200 <= status < 300:
                tally.seconds[kind].append(elapsed)
            else:
                tally.errors[kind].append(f"{status}: {response.text[:300]}")


RSS_PARTS = ("VmRSS", "RssAnon", "RssFile")


def rss_mb(pid: int) -> dict[str, float]:
    """The process's resident memory in MB: all of it (VmRSS), the anonymous part (RssAnon: heaps,
    where a leak would show) and the file-backed part (RssFile: pages of shared libraries and
    mapped files, which grows as code paths are first run)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in RSS_PARTS:
            values[name] = int(rest.split()[0]) / 1024
    return values


def sample_rss(pid: int, every: float, start: float, stop: threading.Event, into: list) -> None:
    while True:
        into.append((time.monotonic() - start, rss_mb(pid)))
        if stop.wait(every):
            into.append((time.monotonic() - start, rss_mb(pid)))
            return


def slope_mb_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope over the second half of the run, in MB per minute."""
    half = samples[-1][0] / 2
    tail = [(t, mb) for t, mb in samples if t >= half]
    if len(tail) < 2:
        return 0.0
    seconds, megabytes = np.array(tail).T
    return float(np.polyfit(seconds / 60, megabytes, 1)[0])


def python_heap(lines: list[dict]) -> dict:
    """bench/heap_trace.py's samples: Python's own allocations over the run."""
    traced = [(line["s"], line["traced_mb"]) for line in lines]
    return {
        "traced_mb": {
            "first": traced[0][1],
            "last": traced[-1][1],
            "max": max(mb for _, mb in traced),
            "slope_second_half_mb_per_min": round(slope_mb_per_minute(traced), 3),
        },
        "gc_objects": {"first": lines[0]["gc_objects"], "last": lines[-1]["gc_objects"]},
        "series": [[line["s"], line["traced_mb"], line["gc_objects"]] for line in lines],
        "series_columns": ["s", "traced_mb", "gc_objects"],
    }


def latency_ms(seconds: list[float]) -> dict:
    if not seconds:
        return {}
    return {
        "p50": round(percentile(seconds, 50) * 1e3, 1),
        "p95": round(percentile(seconds, 95) * 1e3, 1),
        "p99": round(percentile(seconds, 99) * 1e3, 1),
        "max": round(max(seconds) * 1e3, 1),
    }


def load_gallery(server, people: int, per_person: int, rng: np.random.Generator) -> list[int]:
    """People with PNG radiographs, uploaded through the API; returns their ids."""
    ids = []
    with server.admin() as http:
        for n in range(people):
            person = http.post(f"{API}/people", json={"external_ref": f"load-{n}"})
            person.raise_for_status()
            ids.append(person.json()["id"])
            for view in range(per_person):
                image = png_bytes(radiograph_pixels(rng))
                answer = http.post(
                    f"{API}/people/{ids[-1]}/images",
                    files={"file": (f"load-{n}-{view}.png", image, "image/png")},
                    data={"pixel_spacing_mm": "0.3"},
                )
                if answer.status_code != 201:
                    raise SystemExit(f"gallery upload failed: {answer.status_code} {answer.text}")
    return ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=300, help="seconds of load")
    parser.add_argument("--input-size", type=int, default=128, help="the seeded model's, in px")
    parser.add_argument("--upload-share", type=float, default=0.3)
    parser.add_argument("--gallery-people", type=int, default=16)
    parser.add_argument("--images-per-person", type=int, default=2)
    parser.add_argument("--queries", type=int, default=8, help="distinct query images")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument(
        "--max-growth",
        type=float,
        default=1.0,
        help="MB/min of RSS growth tolerated beyond the index's",
    )
    parser.add_argument(
        "--trace-heap",
        action="store_true",
        help="run the server under bench/heap_trace.py and report Python's heap beside RSS",
    )
    parser.add_argument("--backend", default="auto", help="the server's RADMATCH_INFERENCE_BACKEND")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    result: dict = {
        "bench": "load",
        "cpu_cores": os.cpu_count(),
        "input_size": args.input_size,
        "clients": args.clients,
        "duration_s": args.duration,
        "upload_share": args.upload_share,
        "k": args.k,
        "backend": args.backend,
        # The server inherits it; radmatch sets PASSIVE when it is unset (model/threads.py).
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE (radmatch's default)"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        checkpoint = seeded_checkpoint(scratch / "model.pt", args.input_size)
        dimension = EmbeddingModel.load(checkpoint, "cpu").dimension
        queries = [png_bytes(radiograph_pixels(rng)) for _ in range(args.queries)]
        uploads = DistinctUploads(
            [phantom_dicom(radiograph_pixels(rng), f"load-{n}", site="bench") for n in range(4)]
        )
        database_url, key = new_database(scratch)
        heap_trace = scratch / "heap.jsonl"
        launcher = (
            (sys.executable, "-m", "bench.heap_trace", str(heap_trace))
            if args.trace_heap
            else Server.launcher
        )
        server = start_server(
            scratch, database_url, key, checkpoint, launcher, inference_backend=args.backend
        )
        try:
            people = load_gallery(server, args.gallery_people, args.images_per_person, rng)
            result["gallery"] = {
                "people": len(people),
                "images": len(people) * args.images_per_person,
            }
            tallies = [Tally() for _ in range(args.clients)]
            samples: list[tuple[float, float]] = []
            stop = threading.Event()
            start = time.monotonic()
            sampler = threading.Thread(
                target=sample_rss,
                args=(server.process.pid, args.sample_seconds, start, stop, samples),
                daemon=True,
            )
            sampler.start()
            threads = [
                threading.Thread(
                    target=client,
                    args=(
                        server.url,
                        key,
                        start + args.duration,
                        args.seed * 1000 + n,
                        people,
                        queries,
                        uploads,
                        args.upload_share,
                        args.k,
                        tallies[n],
                    ),
                )
                for n in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - start
            stop.set()
            sampler.join()
            with server.admin() as http:
                ready = http.get("/readyz").json()
        finally:
            server.stop()
        heap = (
            [json.loads(line) for line in heap_trace.read_text().splitlines()]
            if args.trace_heap
            else []
        )

    seconds = {kind: [s for t in tallies for s in t.seconds[kind]] for kind in KINDS}
    errors = {kind: [e for t in tallies for e in t.errors[kind]] for kind in KINDS}
    statuses: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
    for tally in tallies:
        for kind in KINDS:
            for status, count in tally.statuses[kind].items():
                statuses[kind][str(status)] = statuses[kind].get(str(status), 0) + count
    requests = {kind: len(seconds[kind]) + len(errors[kind]) for kind in KINDS}
    total = sum(requests.values())
    error_count = sum(len(e) for e in errors.values())
    # What the index legitimately gains: one embedding per stored upload.
    index_growth = len(seconds["upload"]) / (elapsed / 60) * dimension * 4 / 2**20
    memory = {
        part: {
            "first": round(samples[0][1][part], 1),
            "last": round(samples[-1][1][part], 1),
            "max": round(max(values[part] for _, values in samples), 1),
            "slope_second_half_mb_per_min": round(
                slope_mb_per_minute([(t, values[part]) for t, values in samples]), 3
            ),
        }
        for part in RSS_PARTS
    }
    slope = memory["VmRSS"]["slope_second_half_mb_per_min"]
    stable = slope <= index_growth + args.max_growth
    result.update(
        {
            "elapsed_s": round(elapsed, 1),
            "requests": {**requests, "total": total},
            "statuses": statuses,
            "errors": {
                "total": error_count,
                **{kind: len(errors[kind]) for kind in KINDS},
                "examples": sorted({e for kind in KINDS for e in errors[kind]})[:10],
            },
            "throughput_rps": {
                "total": round(total / elapsed, 2),
                **{kind: round(requests[kind] / elapsed, 2) for kind in KINDS},
            },
            "latency_ms": {kind: latency_ms(seconds[kind]) for kind in KINDS},
            "memory_mb": {
                **memory,
                "samples": len(samples),
                "every_s": args.sample_seconds,
                "index_growth_mb_per_min": round(index_growth, 3),
                "series": [
                    [round(t, 1), *(round(values[part], 1) for part in RSS_PARTS)]
                    for t, values in samples
                ],
                "series_columns": ["s", *RSS_PARTS],
            },
            **({"python_heap": python_heap(heap)} if heap else {}),
            "memory_stable": stable,
            "index_after": ready.get("checks", {}),
        }
    )
    print(json.dumps(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if error_count == 0 and stable else 1


if __name__ == "__main__":
    sys.exit(main())
