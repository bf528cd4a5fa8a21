"""The embedder: a ResNet-18 with a one-channel stem and a 128-d L2-normalised head (docs/method.md,
"The embedder"), and the re-identification options its architecture may carry (pooling, a
batch-norm neck, the last stage's stride; docs/results/accuracy.md measures each).

Whatever the options, the embedding is an affine map of a sum over the last feature map's
locations, normalised: `location_terms` gives that sum's terms, which the explanation maps
(model/explanation.py) decompose the similarity into."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.resnet import ResNet18

POOLINGS = ("avg", "gem")
NECKS = ("linear", "bn")
GEM_EPS = 1e-6


@dataclass(frozen=True)
class Architecture:
    embedding_dim: int = 128
    # "avg": the mean over locations (the paper's); "gem": generalised mean, (mean x^p)^(1/p)
    # with p learned from gem_p (Radenovic et al., 2018), between the mean and the maximum.
    pooling: str = "avg"
    gem_p: float = 3.0
    # "linear": the head is one linear layer (the paper's); "bn": a batch norm follows it before
    # the normalisation (Luo et al., 2019), which is an affine map once trained.
    neck: str = "linear"
    last_stride: int = 2  # 1 doubles the last feature map's side (finer maps, 4 x its cost)

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {self.pooling!r}")
        if self.neck not in NECKS:
            raise ValueError(f"neck must be one of {NECKS}, not {self.neck!r}")
        if self.last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, not {self.last_stride}")
        if self.gem_p < 1:
            raise ValueError(f"gem_p must be at least 1, not {self.gem_p}")


class Embedder(nn.Module):
    def __init__(
        self, architecture: Architecture = Architecture(), backbone_weights: Path | None = None
    ):
        super().__init__()
        backbone = ResNet18(last_stride=architecture.last_stride)
        if backbone_weights is not None:
            backbone.load_state_dict(
                _grayscale_stem(torch.load(backbone_weights, map_location="cpu"))
            )
        stem = backbone.conv1
        backbone.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        with torch.no_grad():
            # An RGB stem becomes a grayscale one by summing its colour filters (identical channels).
            backbone.conv1.weight.copy_(stem.weight.sum(dim=1, keepdim=True))
        backbone.fc = nn.Linear(backbone.fc.in_features, architecture.embedding_dim)
        self.backbone = backbone
        self.architecture = architecture
        self.embedding_dim = architecture.embedding_dim
        self.gem_p = None
        if architecture.pooling == "gem":
            self.gem_p = nn.Parameter(torch.tensor(float(architecture.gem_p)))
        self.neck = None
        if architecture.neck == "bn":
            self.neck = nn.BatchNorm1d(architecture.embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone.features(images)
        return F.normalize(self._head(self._pool(features)), dim=1)

    def location_terms(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) terms whose sum over locations is the unnormalised embedding of the
        feature maps (N, C, h, w), exactly, in eval mode.

        The pooled value of each channel is shared among the locations in proportion to what
        each adds to it: x / sum(x) for the mean, x^p / sum(x^p) for the generalised mean. The
        head (with the neck, in eval mode) is affine, z = A pooled + b, so a location's term is
        A (its share) + b / locations."""
        weight, bias = self._affine_head()
        locations = features.shape[2] * features.shape[3]
        powered = self._powered(features)
        pooled = self._root(powered.mean(dim=(2, 3)))[:, :, None, None]
        total = powered.sum(dim=(2, 3), keepdim=True)
        # A channel that is zero everywhere pools to zero: its shares are zero too.
        shares = torch.where(total > 0, pooled * powered / total.clamp(min=1e-30), 0.0)
        return torch.einsum("nchw,dc->ndhw", shares, weight) + bias[None, :, None, None] / locations

    def _powered(self, features: torch.Tensor) -> torch.Tensor:
        if self.gem_p is None:
            return features
        return features.clamp(min=GEM_EPS).pow(self.gem_p)

    def _pool(self, features: torch.Tensor) -> torch.Tensor:
        return self._root(self._powered(features).mean(dim=(2, 3)))

    def _root(self, mean_power: torch.Tensor) -> torch.Tensor:
        return mean_power if self.gem_p is None else mean_power.pow(1 / self.gem_p)

    def _head(self, pooled: torch.Tensor) -> torch.Tensor:
        embedding = self.backbone.fc(pooled)
        return embedding if self.neck is None else self.neck(embedding)

    def _affine_head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The head as (A, b), the neck folded in with its running statistics."""
        weight, bias = self.backbone.fc.weight.float(), self.backbone.fc.bias.float()
        if self.neck is None:
            return weight, bias
        neck = self.neck
        scale = neck.weight.float() / torch.sqrt(neck.running_var.float() + neck.eps)
        shift = neck.bias.float() - scale * neck.running_mean.float()
        return scale[:, None] * weight, scale * bias + shift


def _grayscale_stem(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept torchvision's ImageNet ResNet-18 weights (3-channel stem, 1000-class fc) as they are."""
    state = dict(state)
    if state["conv1.weight"].shape[1] == 1:
        state["conv1.weight"] = state["conv1.weight"].expand(-1, 3, -1, -1) / 3
    return state
