"""The embedder: the paper's architecture (torchvision's ResNet-18, module for module and seed for
seed), unit-length output, a user's own backbone weights, and the re-identification options, each
an embedding that is the normalised sum of its location terms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from model.network import Architecture, Embedder
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


ARCHITECTURES = [
    Architecture(),
    Architecture(pooling="gem"),
    Architecture(neck="bn"),
    Architecture(last_stride=1),
    Architecture(pooling="gem", neck="bn", last_stride=1),
]


@pytest.mark.parametrize("architecture", ARCHITECTURES, ids=repr)
def test_every_architecture_is_the_normalised_sum_of_its_location_terms(architecture):
    torch.manual_seed(2)
    embedder = Embedder(architecture)
    for _ in range(3):  # train mode: a neck's running statistics leave their initial values
        embedder(torch.randn(8, 1, 64, 64))
    embedder.eval()
    images = torch.randn(3, 1, 64, 64)
    with torch.inference_mode():
        embeddings = embedder(images)
        terms = embedder.location_terms(embedder.backbone.features(images))
    side = 64 // 32 * (2 // architecture.last_stride)
    assert terms.shape == (3, 128, side, side)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-6)
    assert torch.allclose(F.normalize(terms.sum(dim=(2, 3)), dim=1), embeddings, atol=1e-5)


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="pooling must be one of"):
        Architecture(pooling="max")
    with pytest.raises(ValueError, match="last_stride must be 1 or 2"):
        Architecture(last_stride=3)
