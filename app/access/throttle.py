"""Throttling of wrong API keys: after too many failures from one client address within a window,
that address is refused before its key is even looked at, so keys cannot be guessed at speed.
The counts live in this process: each server process of a deployment counts its own."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

# Beyond this many addresses with recent failures, those whose failures have all aged out of the
# window are forgotten, so that failures from many addresses cannot grow the table without bound.
TRACKED_ADDRESSES_BEFORE_PRUNING = 10_000


class FailedKeyLimiter:
    def __init__(
        self,
        failures_allowed: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.failures_allowed = failures_allowed
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until this address may try a key again, or None when it may now."""
        with self._lock:
            failures = self._recent(address, self._clock())
            if failures is None or len(failures) < self.failures_allowed:
                return None
            # The address is free once enough failures left the window to allow one more.
            frees_at = failures[-self.failures_allowed] + self.window_seconds
            return max(1, math.ceil(frees_at - self._clock()))

    def record_failure(self, address: str) -> None:
        with self._lock:
            now = self._clock()
            if len(self._failures) >= TRACKED_ADDRESSES_BEFORE_PRUNING:
                for known in list(self._failures):
                    self._recent(known, now)
            self._failures.setdefault(address, deque()).append(now)

    def _recent(self, address: str, now: float) -> deque[float] | None:
        """The address's failures within the window, dropping older ones (and the address, when
        none is left)."""
        failures = self._failures.get(address)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures
