"""The fixed mmap threshold takes effect: a block above it is mapped (and so given back on free)
even after a larger block has been freed, which under glibc's default would have raised the
threshold and put the block in a heap arena. Each case runs in a fresh interpreter, because the
setting lasts for the process."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, ctypes.util, sys
from app.core.allocator import limit_heap_growth

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "limited":
    assert limit_heap_growth()
libc.free(libc.malloc(24 << 20))  # glibc's default now raises its threshold to 24 MB
mapped_before = libc.mallinfo2().hblkhd
block = libc.malloc(8 << 20)
print(libc.mallinfo2().hblkhd - mapped_before >= 8 << 20)
"""

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the setting is glibc's; other C libraries ignore it"
)


def block_was_mapped(mode: str) -> bool:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    answer = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True
    )
    return answer.stdout.strip() == "True"


def test_a_fixed_threshold_maps_large_blocks_after_a_larger_free():
    assert block_was_mapped("limited")


def test_glibc_default_would_have_put_the_block_in_an_arena():
    assert not block_was_mapped("default")
