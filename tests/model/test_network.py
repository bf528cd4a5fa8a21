"""The embedder: the paper's architecture (torchvision's ResNet-18, module for module and seed for
seed), unit-length output, and a user's own backbone weights."""

from __future__ import annotations

import torch
import torchvision

from model.network import Embedder
from model.resnet import ResNet18


def test_output_is_128_d_and_unit_length():
    embeddings = Embedder().eval()(torch.randn(3, 1, 64, 64))
    assert embeddings.shape == (3, 128)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-6)


def test_the_backbone_is_torchvisions_resnet18_seed_for_seed():
    torch.manual_seed(3)
    ours = ResNet18().eval()
    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None).eval()
    theirs = reference.state_dict()
    assert list(ours.state_dict()) == list(theirs)
    assert all(torch.equal(value, theirs[name]) for name, value in ours.state_dict().items())
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(ours(images), reference(images))


def test_imagenet_style_weights_become_a_grayscale_stem(tmp_path):
    torch.manual_seed(0)
    rgb = torchvision.models.resnet18(weights=None)
    weights = tmp_path / "resnet18.pth"
    torch.save(rgb.state_dict(), weights)
    embedder = Embedder(backbone_weights=weights)
    stem = embedder.backbone.conv1.weight
    assert stem.shape == (64, 1, 7, 7)
    # a gray image seen by the RGB stem (three equal channels) gives what the gray stem gives
    assert torch.allclose(stem, rgb.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(embedder.backbone.layer4[1].conv2.weight, rgb.layer4[1].conv2.weight)


def test_one_channel_weights_are_accepted_as_they_are(tmp_path):
    torch.manual_seed(1)
    source = Embedder()
    weights = tmp_path / "gray.pth"
    state = {k: v for k, v in source.backbone.state_dict().items() if not k.startswith("fc.")}
    state |= {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(state, weights)
    embedder = Embedder(backbone_weights=weights)
    assert torch.allclose(embedder.backbone.conv1.weight, source.backbone.conv1.weight, atol=1e-6)
