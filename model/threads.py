"""How many threads the inference libraries use, chosen in one place.

PyTorch, ONNX Runtime and FAISS each keep a pool of worker threads. PyTorch and FAISS share one
OpenMP runtime; ONNX Runtime has its own pool. Left alone, each sizes its pool to every core of the
machine, and after a parallel region their threads keep spinning (busy-waiting for the next piece
of work) for a while before they sleep. On a server that also decodes images, answers requests and
searches the index, the spinning threads of one pool take the cores the other pool's threads need:
a forward pass was measured 5-20 times slower under concurrent load. So:

- Every pool gets the same number of threads, RADMATCH_THREADS (by default the CPUs this process
  may run on, os.sched_getaffinity: a container's cpuset, or taskset's, not the machine's count).
- OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE): they sleep as soon as a parallel region
  ends. OpenMP reads it once, when the runtime loads, so the command line sets it before torch or
  faiss is imported (`wait_passively`, first thing in cli/__init__.py), unless the user set it.
- ONNX Runtime's intra-op threads do not spin (session.intra_op.allow_spinning = 0, set where its
  session is made, model/backends.py) and it runs one operator at a time (inter_op 1).
- torch's inter-op pool can be sized only before the first parallel work, and raises after that:
  it is set once, when it still can be, and left alone otherwise.
- OpenMP keeps its thread count per calling thread: a count set in the thread that started the
  service never reaches the threads that serve its requests, whose FAISS calls would each use
  every core of the machine. So FAISS work sets the count in its own thread first
  (`use_faiss_threads`): all RADMATCH_THREADS for building and adding to an index, one for a
  search, which asks for one query at a time: parallel regions for one query only wake threads
  that have no work (a 100,000-image exact search took 5.2 ms on two threads, 3.2 ms on one).

This module imports torch and faiss only when threads are applied, so that importing it (to call
`wait_passively`) loads neither.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

log = logging.getLogger("radmatch")

_lock = threading.Lock()
_applied: int | None = None
_interop_set = False


def wait_passively() -> None:
    """OpenMP threads sleep when idle instead of spinning; call before torch or faiss loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def apply_threads(threads: int | None = None) -> int:
    """Size torch's and FAISS's thread pools to `threads` (None: the CPUs available) and remember
    it for the ONNX Runtime sessions made from now on; return it. Safe to call again."""
    global _applied, _interop_set
    count = threads if threads is not None else available_cpus()
    if count < 1:
        raise ValueError(f"threads must be at least 1, not {count}")
    import torch

    with _lock:
        torch.set_num_threads(count)
        if not _interop_set:
            try:
                torch.set_num_interop_threads(count)
            except RuntimeError:  # parallel work already ran: torch keeps the size it has
                log.debug("torch's inter-op threads were already in use; left as they are")
            _interop_set = True
        with contextlib.suppress(ImportError):  # faiss is an extra (cpu or gpu)
            use_faiss_threads(count)
        _applied = count
    return count


def thread_count() -> int:
    """The threads last applied, or the CPUs available when none were."""
    return _applied if _applied is not None else available_cpus()


def use_faiss_threads(count: int) -> None:
    """Size the OpenMP pool of the FAISS calls this thread makes from now on."""
    import faiss

    faiss.omp_set_num_threads(count)
