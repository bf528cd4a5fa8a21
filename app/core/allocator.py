"""Keeps a long-running process's memory from creeping up under glibc's malloc.

glibc raises its mmap threshold each time a large block is freed, up to 32 MB, so that after
warm-up the network's activations and the decoded images (0.5-32 MB each, a different size for
every batch) come from its per-thread arenas instead of being mapped and unmapped. Those arenas
fragment and keep what they once held, so the server's resident memory grows in steps for as long
as it runs: 22 MB a minute under 32 clients (bench/load.py). A fixed threshold turns that
adjustment off: larger blocks are mapped on allocation and given back on free. At 4 MB the same
load held memory flat, for about 17% less throughput at saturation (page faults on fresh
mappings); at 16 and 32 MB it crept again. docs/results/reliability.md has the runs.

A MALLOC_MMAP_THRESHOLD_ in the environment (glibc's own setting) is left to govern. Other C
libraries (musl, macOS) are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# From glibc's malloc.h.
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 4 * 2**20


def limit_heap_growth(mmap_threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold for this process; False where it was left alone."""
    if platform.libc_ver()[0] != "glibc" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold))
