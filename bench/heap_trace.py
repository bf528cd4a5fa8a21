"""Runs a `radmatch` command with Python's heap traced, to tell a leak in Python objects from growth
of the process's memory underneath them (allocator, libraries):

    .venv/bin/python bench/heap_trace.py HEAP.jsonl serve --port 8000

Every --every seconds (the HEAP_TRACE_SECONDS variable, default 5) one JSON line is appended to
HEAP.jsonl: seconds since start, the bytes Python has allocated and not freed (tracemalloc), the
number of objects the garbage collector tracks, and the ten source lines whose allocations grew
most since the baseline: the first sample after HEAP_TRACE_BASELINE_SECONDS (default 60), when
start-up and warm-up are over. bench/load.py --trace-heap starts its server this way.
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path


def sample_forever(out: Path, every: float, baseline_after: float) -> None:
    start = time.monotonic()
    baseline = None
    while True:
        seconds = time.monotonic() - start
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        if baseline is None and seconds >= baseline_after:
            baseline = snapshot
        growth = snapshot.compare_to(baseline, "lineno")[:10] if baseline else []
        line = {
            "s": round(seconds, 1),
            "traced_mb": round(tracemalloc.get_traced_memory()[0] / 2**20, 2),
            "gc_objects": len(gc.get_objects()),
            "top_growth": [
                {"where": str(stat.traceback[0]), "kb": round(stat.size_diff / 1024, 1)}
                for stat in growth
                if stat.size_diff > 0
            ],
        }
        with out.open("a") as file:
            file.write(json.dumps(line) + "\n")
        time.sleep(every)


def main() -> None:
    out, command = Path(sys.argv[1]), sys.argv[2:]
    tracemalloc.start()
    every = float(os.environ.get("HEAP_TRACE_SECONDS", "5"))
    baseline_after = float(os.environ.get("HEAP_TRACE_BASELINE_SECONDS", "60"))
    threading.Thread(target=sample_forever, args=(out, every, baseline_after), daemon=True).start()
    sys.argv = ["radmatch", *command]
    runpy.run_module("app.cli", run_name="__main__")


if __name__ == "__main__":
    main()
