"""Explanation maps: each sums to the cosine similarity of the two embeddings, exactly (to float
rounding), and covers the square of the original that the network saw."""

from __future__ import annotations

import pytest
import torch

from model.explanation import input_region, similarity_maps
from model.inference import flip_averaged
from model.network import Architecture, Embedder
from model.preprocess import Preprocessing


def test_each_map_sums_to_the_similarity_of_the_embeddings():
    torch.manual_seed(5)
    embedder = Embedder().eval()
    query, candidate = torch.randn(2, 1, 128, 128)
    maps = similarity_maps(embedder, query, candidate)
    with torch.inference_mode():
        embeddings = embedder(torch.stack([query, candidate]))
    assert abs(maps.similarity - float(embeddings[0] @ embeddings[1])) < 1e-5
    assert maps.query.shape == maps.candidate.shape == (4, 4)  # 128 px / 32
    assert abs(float(maps.query.sum()) - maps.similarity) < 1e-5
    assert abs(float(maps.candidate.sum()) - maps.similarity) < 1e-5
    # Not uniform: the locations differ in what they contribute.
    assert float(maps.query.max() - maps.query.min()) > 1e-4


@pytest.mark.parametrize("flip_tta", [False, True])
@pytest.mark.parametrize(
    "architecture",
    [Architecture(), Architecture(pooling="gem", neck="bn", last_stride=1)],
    ids=["paper", "gem-bn-stride1"],
)
def test_the_maps_sum_to_the_similarity_the_service_computes(architecture, flip_tta):
    torch.manual_seed(6)
    embedder = Embedder(architecture)
    embedder(torch.randn(8, 1, 128, 128))  # train mode: the neck's statistics move
    embedder.eval()
    # A stem that tells left from right, and a query that rises from left to right: it and its
    # mirror embed far apart, as images do in a trained model.
    with torch.no_grad():
        stem = embedder.backbone.conv1.weight
        stem.copy_(stem - stem.flip(-1))
    query = torch.linspace(-3, 3, 128).expand(1, 128, 128) + 0.5 * torch.randn(1, 128, 128)
    candidate = torch.randn(1, 128, 128)
    maps = similarity_maps(embedder, query, candidate, flip_tta)
    with torch.inference_mode():
        prep = Preprocessing(input_size=128, flip_tta=flip_tta)
        embeddings = flip_averaged(embedder, torch.stack([query, candidate]), prep)
    assert maps.similarity == pytest.approx(float(embeddings[0] @ embeddings[1]), abs=1e-5)
    assert float(maps.query.sum()) == pytest.approx(maps.similarity, abs=1e-5)
    assert float(maps.candidate.sum()) == pytest.approx(maps.similarity, abs=1e-5)


def test_the_region_is_the_central_input_crop_in_the_originals_pixels():
    prep = Preprocessing(input_size=256)  # resized to prep.resize, then 256 from its centre
    region = input_region(1000, 800, prep, crop_side_px=600)
    scale = 600 / prep.resize
    margin = (prep.resize - 256) // 2 * scale
    assert region == {
        "x": (800 - 600) // 2 + margin,
        "y": (1000 - 600) // 2 + margin,
        "width": 256 * scale,
        "height": 256 * scale,
    }
    # A crop larger than the image takes the largest central square that fits.
    assert input_region(300, 500, prep, crop_side_px=600)["x"] == 100 + (
        (prep.resize - 256) // 2 * 300 / prep.resize
    )
