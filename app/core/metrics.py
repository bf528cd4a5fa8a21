"""Prometheus metrics, one registry per service so that several apps in one process stay apart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "radmatch_http_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "radmatch_http_request_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ingested = Counter(
            "radmatch_images_ingested", "Images added to the case database", registry=self.registry
        )
        self.searches = Counter(
            "radmatch_searches", "Searches answered and stored", registry=self.registry
        )
        self.index_size = Gauge(
            "radmatch_index_images", "Images in this process's index", registry=self.registry
        )
        self.stage_seconds = Histogram(
            "radmatch_stage_seconds",
            "Time per stage of uploads and searches (embed: preprocessing, waiting for a batch "
            "and the network)",
            ["operation", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.embed_batch_images = Histogram(
            "radmatch_embed_batch_images",
            "Images per network run of the request batcher",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.refused_keys = Counter(
            "radmatch_api_keys_refused",
            "Requests refused for a wrong or revoked API key",
            registry=self.registry,
        )
        self.throttled_keys = Counter(
            "radmatch_api_key_requests_throttled",
            "Requests refused unchecked (429): their address sent too many wrong keys lately",
            registry=self.registry,
        )

        self.decodes = Counter(
            "radmatch_decodes",
            "Decodes by what the decode budget did with them: admitted (at once or after "
            "waiting), queued (had to wait), refused (429, or 413 when over the whole budget)",
            ["outcome"],
            registry=self.registry,
        )

    @contextmanager
    def timed(self, operation: str, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(operation, stage).observe(time.perf_counter() - started)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
