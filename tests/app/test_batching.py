"""The request batcher: images embedded together get the embeddings they get one at a time."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from app.core.metrics import Metrics
from app.serving.batching import EmbeddingBatcher
from model.checkpoint import save_checkpoint
from model.image import DecodedImage, ImageMetadata
from model.inference import EmbeddingModel
from model.network import Embedder
from model.preprocess import Preprocessing


def radiograph(seed: int) -> DecodedImage:
    pixels = np.random.default_rng(seed).random((96, 80), dtype=np.float32)
    return DecodedImage(pixels, ImageMetadata(format="png", width=80, height=96, bits_stored=16))


def network_runs(metrics: Metrics) -> tuple[int, float]:
    """How many batches the batcher ran, and how many images they held."""
    samples = {s.name: s.value for s in metrics.embed_batch_images.collect()[0].samples}
    return int(samples["radmatch_embed_batch_images_count"]), samples[
        "radmatch_embed_batch_images_sum"
    ]


def embed_concurrently(batcher: EmbeddingBatcher, models, images) -> list[np.ndarray]:
    """Every image handed in at once from its own thread, as concurrent requests do."""
    start = threading.Barrier(len(images))

    def request(model, image):
        start.wait()
        return batcher.embed(model, image, None)

    with ThreadPoolExecutor(len(images)) as pool:
        return list(pool.map(request, models, images))


@pytest.fixture
def model(checkpoint) -> EmbeddingModel:
    return EmbeddingModel.load(checkpoint, "cpu")


def test_batched_embeddings_equal_one_at_a_time(model):
    images = [radiograph(seed) for seed in range(12)]
    one_at_a_time = np.stack([model.embed([image])[0] for image in images])
    metrics = Metrics()
    batcher = EmbeddingBatcher(max_batch=8, wait_seconds=0.5, metrics=metrics)
    try:
        batched = np.stack(embed_concurrently(batcher, [model] * len(images), images))
    finally:
        batcher.close()

    runs, embedded = network_runs(metrics)
    assert embedded == len(images)
    assert runs < len(images), "the images were not batched"
    assert runs >= 2, "max_batch was not respected"
    # The same network on the same inputs: only float32 summation order may differ.
    np.testing.assert_allclose(batched, one_at_a_time, rtol=0, atol=1e-6)
    assert np.array_equal(
        (batched @ batched.T).argsort(axis=1), (one_at_a_time @ one_at_a_time.T).argsort(axis=1)
    )


def test_two_models_in_one_batch_each_embed_their_own(model, tmp_path):
    torch.manual_seed(1)
    other_path = tmp_path / "other.pt"
    save_checkpoint(other_path, Embedder(), Preprocessing(input_size=64), metrics={})
    other = EmbeddingModel.load(other_path, "cpu")
    images = [radiograph(seed) for seed in range(6)]
    models = [model, other] * 3
    metrics = Metrics()
    batcher = EmbeddingBatcher(max_batch=16, wait_seconds=0.5, metrics=metrics)
    try:
        batched = embed_concurrently(batcher, models, images)
    finally:
        batcher.close()

    for vector, owner, image in zip(batched, models, images, strict=True):
        np.testing.assert_allclose(vector, owner.embed([image])[0], rtol=0, atol=1e-6)
    assert network_runs(metrics) == (2, 6)


def test_a_failing_batch_fails_every_request_in_it(model, checkpoint):
    broken = EmbeddingModel.load(checkpoint, "cpu")
    broken.checkpoint.embedder.to("meta")  # its weights are gone: the network run fails
    metrics = Metrics()
    batcher = EmbeddingBatcher(max_batch=4, wait_seconds=0.5, metrics=metrics)
    images = [radiograph(seed) for seed in range(3)]
    try:
        with pytest.raises(Exception, match="meta"):
            embed_concurrently(batcher, [broken] * 3, images)
        assert network_runs(metrics) == (1, 3)
        # The batcher goes on serving the next requests.
        assert batcher.embed(model, images[0], None).shape == (model.dimension,)
    finally:
        batcher.close()
