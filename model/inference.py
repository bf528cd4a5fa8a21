"""Decoded radiographs to unit embeddings with a trained checkpoint, in batches, on the GPU when there
is one. The service and `radmatch evaluate` both embed through here, so at one precision they agree
to the bit. On a GPU the network runs channels-last, and in bfloat16 when asked (the service's
default there): about twice the images per second, at cosine differences around 1e-3."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

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


Precision = Literal["fp32", "bf16"]


@torch.inference_mode()
def embed_inputs(
    network: torch.nn.Module,
    inputs: torch.Tensor,
    batch_size: int = 64,
    precision: Precision = "fp32",
) -> torch.Tensor:
    """Embeddings (N, D) on the CPU of preprocessed inputs (N, 1, S, S), on the network's device."""
    device = next(network.parameters()).device
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    outputs = []
    with autocast:
        for batch in inputs.split(batch_size):
            embeddings = network(batch.to(device).contiguous(memory_format=layout)).float()
            if precision == "bf16":  # unit length again, in float32
                embeddings = F.normalize(embeddings, dim=1)
            outputs.append(embeddings.cpu())
    return torch.cat(outputs)


class EmbeddingModel:
    """A checkpoint ready to embed: its network in eval mode and the preprocessing it was trained with."""

    def __init__(self, checkpoint: Checkpoint, path: Path, precision: Precision = "fp32"):
        self.checkpoint = checkpoint
        self.path = path
        self.precision = precision

    @classmethod
    def load(
        cls, path: Path, device: str | None = None, precision: Precision | Literal["auto"] = "auto"
    ) -> EmbeddingModel:
        """Raises CheckpointError for a file that is not a radmatch checkpoint. Precision "auto"
        is bfloat16 on a GPU, float32 on the CPU."""
        checkpoint = load_checkpoint(path, device or default_device())
        on_gpu = next(checkpoint.embedder.parameters()).device.type == "cuda"
        if on_gpu:
            checkpoint.embedder.to(memory_format=torch.channels_last)
        if precision == "auto":
            precision = "bf16" if on_gpu else "fp32"
        return cls(checkpoint, Path(path), precision)

    @property
    def sha256(self) -> str:
        return self.checkpoint.sha256

    @property
    def inference(self) -> dict[str, str]:
        """How this model embeds: device type ("cpu", "cuda") and precision; a search records it
        because the two decide how far a similarity moves when the query is embedded again."""
        device = next(self.checkpoint.embedder.parameters()).device.type
        return {"device": device, "precision": self.precision}

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
        return self.embed_inputs(inputs)

    def embed_inputs(self, inputs: torch.Tensor) -> np.ndarray:
        """Unit embeddings, float32 (N, D), of preprocessed inputs (N, 1, S, S)."""
        return embed_inputs(self.checkpoint.embedder, inputs, precision=self.precision).numpy()
