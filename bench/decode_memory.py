"""Memory a real `radmatch serve` takes for images that are small files but large pictures.

Starts a server, samples its resident memory (VmRSS from /proc) while it answers searches of: a
normal 2048x2048 16-bit radiograph (the baseline), a 4300x4300 16-bit radiograph (the largest a
detector makes), one 7740x7740 RGB PNG of a flat colour (175 KB) and four of them in parallel.
Prints one JSON object: per scenario the RSS before and at the peak, the peak's rise as a ratio
to the baseline's, and the status codes. With --limits-off the per-image limit and the decode
budget are set out of reach (RADMATCH_MAX_DECODE_BYTES, RADMATCH_DECODE_BUDGET_BYTES), which is
how the service behaved before they existed.

    .venv/bin/python -m bench.decode_memory [--limits-off]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from tests.model.test_decode_memory import flat_png
from tests.support.images import png_bytes
from tests.support.servers import API, Server, new_server, seeded_checkpoint

OUT_OF_REACH = str(1 << 50)
SAMPLE_SECONDS = 0.01


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS"))


def radiograph(side: int) -> bytes:
    rng = np.random.default_rng(side)
    ramp = np.add.outer(np.arange(side), np.arange(side)).astype(np.float64) / (2 * side)
    noisy = ramp * 60000 + rng.normal(0, 300, (side, side))
    return png_bytes(np.clip(noisy, 0, 65535).astype(np.uint16))


def measure(server: Server, payloads: list[bytes]) -> dict:
    """Send the payloads as concurrent searches; RSS before and its peak meanwhile."""
    pid = server.process.pid
    time.sleep(1.0)  # let the previous scenario's memory settle
    before = rss(pid)
    peak = before
    done = threading.Event()
    statuses: list[int] = []

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss(pid))
            time.sleep(SAMPLE_SECONDS)

    def send(data: bytes) -> None:
        with server.examiner() as client:
            answer = client.post(f"{API}/search", files={"file": ("q.png", data)}, timeout=300)
        statuses.append(answer.status_code)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    senders = [threading.Thread(target=send, args=(data,)) for data in payloads]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    done.set()
    sampler.join()
    return {
        "rss_before_mb": round(before / 2**20),
        "rss_peak_mb": round(peak / 2**20),
        "rise_mb": round((peak - before) / 2**20),
        "statuses": sorted(statuses),
        "file_kb": [round(len(data) / 1024) for data in payloads],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits-off", action="store_true")
    args = parser.parse_args()
    settings = (
        {"max_decode_bytes": OUT_OF_REACH, "decode_budget_bytes": OUT_OF_REACH}
        if args.limits_off
        else {}
    )
    huge = flat_png(7740)
    scenarios = {
        "baseline_2048_16bit": [radiograph(2048)],
        "detector_4300_16bit": [radiograph(4300)],
        "flat_7740_rgb_png": [huge],
        "flat_7740_rgb_png_x4": [huge] * 4,
    }
    result: dict = {"bench": "decode_memory", "limits_off": args.limits_off}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = seeded_checkpoint(root / "model.pt")
        server = new_server(root, f"sqlite:///{root / 'radmatch.db'}", checkpoint, **settings)
        try:
            measure(server, [radiograph(512)])  # first search loads what a search needs
            for name, payloads in scenarios.items():
                result[name] = measure(server, payloads)
        finally:
            server.stop()
    baseline = max(result["baseline_2048_16bit"]["rise_mb"], 1)
    for name in scenarios:
        result[name]["rise_vs_baseline"] = round(result[name]["rise_mb"] / baseline, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
