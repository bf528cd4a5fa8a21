"""Flip TTA: a checkpoint made with it embeds the mean of an image and its mirror image, by every
path from the checkpoint (the service's backends, evaluation and calibration), and its
explanation maps still sum to the similarity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import save_checkpoint
from model.explanation import similarity_maps
from model.inference import EmbeddingModel
from model.network import Embedder
from model.preprocess import Preprocessing
from training.cohorts import read_knee_manifest
from training.config import PRESETS
from training.embedders import checkpoint_embedder, model_embedder


def saved(path: Path, flip_tta: bool) -> Path:
    torch.manual_seed(3)
    save_checkpoint(path, Embedder(), Preprocessing(input_size=64, flip_tta=flip_tta))
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("flip")
    return saved(folder / "plain.pt", False), saved(folder / "flip.pt", True)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_flip_checkpoint_embeds_an_image_and_its_mirror_alike(checkpoints, backend):
    plain = EmbeddingModel.load(checkpoints[0], "cpu", backend=backend)
    flip = EmbeddingModel.load(checkpoints[1], "cpu", backend=backend)
    inputs = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    embedded = flip.embed_inputs(inputs)
    np.testing.assert_allclose(embedded, flip.embed_inputs(inputs.flip(-1)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, atol=1e-5)
    # The same weights: the mean of the plain model's embeddings of both views, normalised.
    both = plain.embed_inputs(inputs) + plain.embed_inputs(inputs.flip(-1))
    expected = both / np.linalg.norm(both, axis=1, keepdims=True)
    np.testing.assert_allclose(embedded, expected, atol=1e-5)
    assert np.abs(embedded - plain.embed_inputs(inputs)).max() > 1e-3


def test_evaluation_and_calibration_embed_as_the_service_does(checkpoints, phantom_manifest):
    records = read_knee_manifest(phantom_manifest)[:6]
    served = model_embedder(EmbeddingModel.load(checkpoints[1], "cpu", backend="onnxruntime"))
    direct = checkpoint_embedder(checkpoints[1])  # the network itself, as calibration embeds
    cosine = (served(records) * direct(records)).sum(dim=1)
    assert float(cosine.min()) > 0.99999


def test_the_maps_of_a_flip_checkpoint_sum_to_its_similarity(checkpoints):
    model = EmbeddingModel.load(checkpoints[1], "cpu", backend="torch")
    query, candidate = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    maps = similarity_maps(model.checkpoint.embedder, query, candidate, flip_tta=True)
    embeddings = model.embed_inputs(torch.stack([query, candidate]))
    assert maps.similarity == pytest.approx(float(embeddings[0] @ embeddings[1]), abs=1e-5)
    assert float(maps.query.sum()) == pytest.approx(maps.similarity, abs=1e-5)
    assert float(maps.candidate.sum()) == pytest.approx(maps.similarity, abs=1e-5)


def test_the_cpu_preset_makes_flip_checkpoints_and_the_paper_preset_does_not():
    assert PRESETS["cpu"].flip_tta and not PRESETS["paper"].flip_tta
