"""Concurrent uploads and searches embedded together, in micro-batches.

Each request decodes and preprocesses its image in its own thread, overlapping the network's work
on earlier requests, then hands the input tensor to the one embedding thread. That thread takes the
first waiting input, waits at most `wait_seconds` for more (up to `max_batch`), runs the network
once for all of them and gives each request its row. Inputs for different models (during a model
switch) are run as separate batches.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from app.core.metrics import Metrics
from model.image import DecodedImage
from model.inference import EmbeddingModel


@dataclass
class _Request:
    model: EmbeddingModel
    inputs: torch.Tensor
    done: Future = field(default_factory=Future)


class EmbeddingBatcher:
    def __init__(self, max_batch: int, wait_seconds: float, metrics: Metrics):
        self.max_batch = max_batch
        self.wait_seconds = wait_seconds
        self._metrics = metrics
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="embedding", daemon=True)
        self._thread.start()

    def embed(
        self, model: EmbeddingModel, image: DecodedImage, pixel_spacing_mm: float | None
    ) -> np.ndarray:
        """The image's unit embedding, float32 (D,)."""
        request = _Request(model, model.input_tensor(image, pixel_spacing_mm))
        self._queue.put(request)
        return request.done.result()

    def close(self) -> None:
        """Embed what was handed in, then stop."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, closing = [first], False
            deadline = time.monotonic() + self.wait_seconds
            while len(batch) < self.max_batch:
                try:
                    request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if request is None:
                    closing = True
                    break
                batch.append(request)
            self._embed(batch)
            if closing:
                return

    def _embed(self, batch: list[_Request]) -> None:
        by_model: dict[int, list[_Request]] = {}
        for request in batch:
            by_model.setdefault(id(request.model), []).append(request)
        for requests in by_model.values():
            self._metrics.embed_batch_images.observe(len(requests))
            try:
                vectors = requests[0].model.embed_inputs(torch.stack([r.inputs for r in requests]))
            except BaseException as error:  # every waiting request learns of it
                for request in requests:
                    request.done.set_exception(error)
            else:
                for request, vector in zip(requests, vectors, strict=True):
                    request.done.set_result(vector)
