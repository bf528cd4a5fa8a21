"""A budget for the memory of the decodes a server runs at once: each decode is admitted with its
estimate (model.memory, from the header alone) only while the sum of the running decodes'
estimates stays within the budget. One that does not fit waits a bounded time for others to
finish, then is refused (429 with Retry-After), so that many large images sent together queue or
are turned away instead of taking the server's memory."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter

from app.core.errors import Busy, TooLarge
from model.memory import DecodeEstimate, format_bytes


class DecodeBudget:
    def __init__(
        self, budget_bytes: int, wait_seconds: float, decodes: Counter | None = None
    ) -> None:
        self.budget_bytes = budget_bytes
        self.wait_seconds = wait_seconds
        self._decodes = decodes  # labelled by outcome: admitted, queued, refused
        self._in_use = 0
        self._freed = threading.Condition()

    @property
    def in_use(self) -> int:
        """Bytes the running decodes' estimates add up to."""
        with self._freed:
            return self._in_use

    @contextmanager
    def admit(self, estimate: DecodeEstimate) -> Iterator[None]:
        """Run the decode inside this context once its estimate fits the budget."""
        self._reserve(estimate)
        try:
            yield
        finally:
            with self._freed:
                self._in_use -= estimate.bytes
                self._freed.notify_all()

    def _reserve(self, estimate: DecodeEstimate) -> None:
        if estimate.bytes > self.budget_bytes:
            self._count("refused")
            raise TooLarge(
                f"decoding this {estimate.description} needs about "
                f"{format_bytes(estimate.bytes)}; the server decodes at most "
                f"{format_bytes(self.budget_bytes)} at once"
            )
        deadline = time.monotonic() + self.wait_seconds
        with self._freed:
            if not self._fits(estimate):
                self._count("queued")
            while not self._fits(estimate):
                left = deadline - time.monotonic()
                if left <= 0:
                    self._count("refused")
                    wait = max(1, math.ceil(self.wait_seconds))
                    raise Busy(
                        f"the server is decoding other large images; try again in {wait} s",
                        retry_after_seconds=wait,
                    )
                self._freed.wait(left)
            self._in_use += estimate.bytes
        self._count("admitted")

    def _fits(self, estimate: DecodeEstimate) -> bool:
        return self._in_use + estimate.bytes <= self.budget_bytes

    def _count(self, outcome: str) -> None:
        if self._decodes is not None:
            self._decodes.labels(outcome).inc()
