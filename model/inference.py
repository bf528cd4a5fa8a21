"""Decoded radiographs to unit embeddings with a trained checkpoint, in batches, on the GPU when there
is one. The service and `radmatch evaluate` both embed through here, so they agree to the bit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import Checkpoint, load_checkpoint
from model.image import DecodedImage
from model.preprocess import preprocess


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def pixel_spacing(image: DecodedImage, known_mm: float | None = None) -> float | None:
    """The column spacing used for the physical centre crop: what the caller knows (a manifest, a
    form field) before what the file says."""
    if known_mm is not None:
        return known_mm
    spacing = image.metadata.pixel_spacing_mm
    return spacing[1] if spacing is not None else None


@torch.inference_mode()
def embed_inputs(
    network: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Embeddings (N, D) on the CPU of preprocessed inputs (N, 1, S, S), on the network's device."""
    device = next(network.parameters()).device
    return torch.cat([network(b.to(device)).float().cpu() for b in inputs.split(batch_size)])


class EmbeddingModel:
    """A checkpoint ready to embed: its network in eval mode and the preprocessing it was trained with."""

    def __init__(self, checkpoint: Checkpoint, path: Path):
        self.checkpoint = checkpoint
        self.path = path

    @classmethod
    def load(cls, path: Path, device: str | None = None) -> EmbeddingModel:
        """Raises CheckpointError for a file that is not a radmatch checkpoint."""
        return cls(load_checkpoint(path, device or default_device()), Path(path))

    @property
    def sha256(self) -> str:
        return self.checkpoint.sha256

    @property
    def dimension(self) -> int:
        return self.checkpoint.embedder.embedding_dim

    def input_tensor(
        self, image: DecodedImage, pixel_spacing_mm: float | None = None
    ) -> torch.Tensor:
        spacing = pixel_spacing(image, pixel_spacing_mm)
        return preprocess(image.pixels, self.checkpoint.preprocessing, spacing)

    def embed(
        self,
        images: Sequence[DecodedImage],
        pixel_spacings_mm: Sequence[float | None] | None = None,
    ) -> np.ndarray:
        """Unit embeddings, float32 (N, D), one per image."""
        spacings = pixel_spacings_mm or [None] * len(images)
        inputs = torch.stack(
            [self.input_tensor(im, sp) for im, sp in zip(images, spacings, strict=True)]
        )
        return embed_inputs(self.checkpoint.embedder, inputs).numpy()
