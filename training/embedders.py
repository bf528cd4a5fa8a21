"""Functions from cohort records to embeddings: a trained checkpoint, and the reference embedders
that learn nothing and tell how hard a cohort is before any training:

- raw-pixels: the preprocessed image itself, centred and L2-normalised (nearest neighbour on pixels).
- untrained-resnet18: the paper's network with random weights (a fixed seed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from model.checkpoint import load_checkpoint
from model.decode import decode_image
from model.inference import EmbeddingModel, embed_inputs, flip_averaged, pixel_spacing
from model.network import Embedder
from model.preprocess import Preprocessing, final_crop, resized
from training.records import ImageRecord

RecordEmbedder = Callable[[Sequence[ImageRecord]], torch.Tensor]


def load_resized(record: ImageRecord, prep: Preprocessing) -> torch.Tensor:
    """Decode a cohort image, centre-crop and resize it: (1, resize, resize), values in [0, 1]."""
    decoded = decode_image(record.path.read_bytes())
    return resized(decoded.pixels, prep, pixel_spacing(decoded, record.pixel_spacing_mm))


def load_input(record: ImageRecord, prep: Preprocessing) -> torch.Tensor:
    """Decode a cohort image and preprocess it for evaluation, shape (1, S, S)."""
    return final_crop(load_resized(record, prep), prep)


def record_inputs(records: Sequence[ImageRecord], prep: Preprocessing) -> torch.Tensor:
    return torch.stack([load_input(r, prep) for r in tqdm(records, desc="decode", unit="img")])


def raw_pixels(prep: Preprocessing) -> RecordEmbedder:
    def embed(records: Sequence[ImageRecord]) -> torch.Tensor:
        flat = record_inputs(records, prep).flatten(1)
        return F.normalize(flat - flat.mean(dim=1, keepdim=True), dim=1)

    return embed


def network_embedder(network: Embedder, prep: Preprocessing) -> RecordEmbedder:
    def embed(records: Sequence[ImageRecord]) -> torch.Tensor:
        network.eval()
        return flip_averaged(lambda x: embed_inputs(network, x), record_inputs(records, prep), prep)

    return embed


def model_embedder(model: EmbeddingModel) -> RecordEmbedder:
    """A checkpoint as the service embeds with it: its preprocessing, then its backend."""

    def embed(records: Sequence[ImageRecord]) -> torch.Tensor:
        inputs = record_inputs(records, model.checkpoint.preprocessing)
        return torch.from_numpy(model.embed_inputs(inputs))

    return embed


def untrained_resnet18(prep: Preprocessing, seed: int = 0) -> RecordEmbedder:
    torch.manual_seed(seed)
    return network_embedder(Embedder(), prep)


def checkpoint_embedder(path: Path, device: str = "cpu") -> RecordEmbedder:
    """A trained embedder, with the preprocessing it was trained with."""
    checkpoint = load_checkpoint(path, device)
    return network_embedder(checkpoint.embedder, checkpoint.preprocessing)


def baseline_embedder(name: str, input_size: int) -> RecordEmbedder:
    prep = Preprocessing(input_size=input_size)
    if name == "raw-pixels":
        return raw_pixels(prep)
    if name == "untrained-resnet18":
        return untrained_resnet18(prep)
    raise ValueError(f"unknown baseline embedder {name!r}; choose raw-pixels or untrained-resnet18")
