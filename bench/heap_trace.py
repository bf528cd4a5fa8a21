"""Runs a `radmatch` command with Python's heap traced, to tell a leak in Python objects from growth
of the process's memory underneath them (allocator, libraries):

    .venv/bin/python -m bench.heap_trace HEAP.jsonl serve --port 8000

Every HEAP_TRACE_SECONDS (default 5) one JSON line is appended to HEAP.jsonl: seconds since start,
the memory Python has allocated and not freed (tracemalloc), and the number of objects the garbage
collector tracks. Tracing every allocation slows the process several times over, so a traced run
measures the heap, not speed. bench/load.py --trace-heap starts its server this way.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path


def sample_forever(out: Path, every: float) -> None:
    start = time.monotonic()
    while True:
        line = {
            "s": round(time.monotonic() - start, 1),
            "traced_mb": round(tracemalloc.get_traced_memory()[0] / 2**20, 2),
            "gc_objects": len(gc.get_objects()),
        }
        with out.open("a") as file:
            file.write(json.dumps(line) + "\n")
        time.sleep(every)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("heap", type=Path, help="JSON lines file the samples are appended to")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the radmatch command")
    args = parser.parse_args()
    out, command = args.heap, args.command
    tracemalloc.start()
    every = float(os.environ.get("HEAP_TRACE_SECONDS", "5"))
    threading.Thread(target=sample_forever, args=(out, every), daemon=True).start()
    sys.argv = ["radmatch", *command]
    runpy.run_module("cli", run_name="__main__")


if __name__ == "__main__":
    main()
