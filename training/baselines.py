"""Reference embedders that learn nothing: they tell how hard a cohort is before any training.

- raw-pixels: the preprocessed image itself, centred and L2-normalised (nearest neighbour on pixels).
- untrained-resnet18: the paper's network with random weights (a fixed seed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from model.decode import decode_image
from model.network import Embedder
from model.preprocess import Preprocessing, final_crop, resized
from training.records import ImageRecord

RecordEmbedder = Callable[[Sequence[ImageRecord]], torch.Tensor]


def load_resized(record: ImageRecord, prep: Preprocessing) -> torch.Tensor:
    """Decode a cohort image, centre-crop and resize it: (1, resize, resize), values in [0, 1]."""
    decoded = decode_image(record.path.read_bytes())
    spacing = record.pixel_spacing_mm
    if spacing is None and decoded.metadata.pixel_spacing_mm is not None:
        spacing = decoded.metadata.pixel_spacing_mm[1]
    return resized(decoded.pixels, prep, spacing)


def load_input(record: ImageRecord, prep: Preprocessing) -> torch.Tensor:
    """Decode a cohort image and preprocess it for evaluation, shape (1, S, S)."""
    return final_crop(load_resized(record, prep), prep)


def _inputs(records: Sequence[ImageRecord], prep: Preprocessing) -> torch.Tensor:
    return torch.stack([load_input(r, prep) for r in tqdm(records, desc="decode", unit="img")])


def raw_pixels(prep: Preprocessing) -> RecordEmbedder:
    def embed(records: Sequence[ImageRecord]) -> torch.Tensor:
        flat = _inputs(records, prep).flatten(1)
        return F.normalize(flat - flat.mean(dim=1, keepdim=True), dim=1)

    return embed


def untrained_resnet18(prep: Preprocessing, seed: int = 0, batch_size: int = 64) -> RecordEmbedder:
    torch.manual_seed(seed)
    network = Embedder().eval()

    @torch.inference_mode()
    def embed(records: Sequence[ImageRecord]) -> torch.Tensor:
        inputs = _inputs(records, prep)
        return torch.cat([network(batch) for batch in inputs.split(batch_size)])

    return embed


def baseline_embedder(name: str, input_size: int) -> RecordEmbedder:
    prep = Preprocessing(input_size=input_size)
    if name == "raw-pixels":
        return raw_pixels(prep)
    if name == "untrained-resnet18":
        return untrained_resnet18(prep)
    raise ValueError(f"unknown baseline embedder {name!r}; choose raw-pixels or untrained-resnet18")
