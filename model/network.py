"""The embedder: a ResNet-18 with a one-channel stem and a 128-d L2-normalised head (docs/method.md,
"The embedder")."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.resnet import ResNet18


class Embedder(nn.Module):
    def __init__(self, embedding_dim: int = 128, backbone_weights: Path | None = None):
        super().__init__()
        backbone = ResNet18()
        if backbone_weights is not None:
            backbone.load_state_dict(
                _grayscale_stem(torch.load(backbone_weights, map_location="cpu"))
            )
        stem = backbone.conv1
        backbone.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        with torch.no_grad():
            # An RGB stem becomes a grayscale one by summing its colour filters (identical channels).
            backbone.conv1.weight.copy_(stem.weight.sum(dim=1, keepdim=True))
        backbone.fc = nn.Linear(backbone.fc.in_features, embedding_dim)
        self.backbone = backbone
        self.embedding_dim = embedding_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone(images), dim=1)


def _grayscale_stem(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept torchvision's ImageNet ResNet-18 weights (3-channel stem, 1000-class fc) as they are."""
    state = dict(state)
    if state["conv1.weight"].shape[1] == 1:
        state["conv1.weight"] = state["conv1.weight"].expand(-1, 3, -1, -1) / 3
    return state
