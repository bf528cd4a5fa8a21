"""Preprocessing as in the paper, with a physical centre crop; the embedder's shape contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from model.network import Embedder
from model.preprocess import Preprocessing, centre_crop, crop_side_px, final_crop, preprocess


def _phantom_disc(spacing_mm: float, field_mm: float = 200.0) -> np.ndarray:
    """A 60 mm disc with a 10 mm off-centre spot, imaged at the given pixel spacing."""
    n = round(field_mm / spacing_mm)
    centres = (np.arange(n) - n / 2 + 0.5) * spacing_mm
    x, y = np.meshgrid(centres, centres)
    image = (np.hypot(x, y) < 30).astype(np.float32) * 0.6
    image[np.hypot(x - 15, y + 10) < 5] = 1.0
    return image


def test_crop_is_physical_when_spacing_is_known():
    prep = Preprocessing(input_size=64, crop_mm=100.0)
    fine = preprocess(_phantom_disc(0.2), prep, 0.2)
    coarse = preprocess(_phantom_disc(0.5), prep, 0.5)
    assert fine.shape == coarse.shape == (1, 64, 64)
    correlation = np.corrcoef(fine.flatten().numpy(), coarse.flatten().numpy())[0, 1]
    assert correlation > 0.97
    # Cropping by pixels instead would show the two detectors' images at different scales.
    by_pixels = preprocess(_phantom_disc(0.5), prep, None)
    assert np.corrcoef(fine.flatten().numpy(), by_pixels.flatten().numpy())[0, 1] < 0.9


def test_unknown_spacing_uses_the_papers_pixel_crop():
    prep = Preprocessing()
    assert crop_side_px(prep, None) == 700
    assert crop_side_px(prep, 0.25) == 480
    assert centre_crop(np.zeros((1000, 800)), 700).shape == (700, 700)
    assert centre_crop(np.zeros((500, 800)), 700).shape == (500, 500)


def test_paper_sizes_and_normalisation():
    prep = Preprocessing(input_size=256)
    assert prep.resize == 280
    out = preprocess(np.full((900, 900), 0.5, dtype=np.float32), prep, None)
    assert out.shape == (1, 256, 256)
    assert torch.allclose(out, torch.zeros_like(out), atol=1e-5)  # (0.5 - mean) / std


def test_random_crop_is_reproducible_and_inside_the_image():
    prep = Preprocessing(input_size=32)
    resized = torch.arange(35 * 35, dtype=torch.float32).reshape(1, 35, 35)
    first = final_crop(resized, prep, torch.Generator().manual_seed(3))
    again = final_crop(resized, prep, torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and first.shape == (1, 32, 32)
    crops = {
        final_crop(resized, prep, torch.Generator().manual_seed(s))[0, 0, 0].item()
        for s in range(20)
    }
    assert len(crops) > 1, "training crops move"


def test_embedder_outputs_unit_vectors():
    network = Embedder().eval()
    with torch.inference_mode():
        out = network(torch.randn(3, 1, 64, 64))
    assert out.shape == (3, 128)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("stem_channels", [3, 1])
def test_embedder_accepts_a_local_backbone_weights_file(tmp_path, stem_channels):
    reference = torchvision.models.resnet18(weights=None)
    state = reference.state_dict()
    if stem_channels == 1:
        state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
    torch.save(state, tmp_path / "resnet18.pth")
    network = Embedder(backbone_weights=tmp_path / "resnet18.pth")
    expected = reference.conv1.weight.sum(dim=1, keepdim=True)
    assert torch.allclose(network.backbone.conv1.weight, expected, atol=1e-5)
    assert torch.equal(network.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
