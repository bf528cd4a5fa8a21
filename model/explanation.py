"""Where a similarity comes from: the cosine similarity of two embeddings decomposed exactly over
the locations of the last feature map, for each image.

The paper's embedder averages the last feature map F (C x h x w) over its N = h * w locations and
applies a linear head, z = W mean(F) + b, then normalises: e = z / |z|. So z is a sum of one term
per location, t_ij = (W F_ij + b) / N (the head's bias shared evenly among the locations), and the
similarity s = e_q . e_c = sum_ij t_ij(q) . e_c / |z_q|. The query's map holds those N shares; the
candidate's map is the same with the two images' roles swapped. Each map sums to s exactly (up to
float rounding): a positive cell pulls the two images together, a negative one pushes them apart.
A cell is a location of the feature grid, whose receptive field is wider than its share of the
image.

The other architectures keep the sum exact (model/network.py, Embedder.location_terms): a
batch-norm neck is affine once trained, so it folds into W and b; generalised-mean pooling is not
linear, so each channel's pooled value is shared among the locations in proportion to F_ij^p
(F_ij / N for the mean, p = 1). That share is a choice, the one that reduces to the mean's, not
the only exact one: it credits a location with its weight in the pooled value.

For a checkpoint made with flip_tta, the embedding is the normalised sum of the image's and its
mirror image's unit embeddings, so each image has twice N terms (each view's divided by its own
|z|); a mirror cell is added to the cell it lies over (its column reversed), so the maps still sum
to the similarity exactly, and a cell holds what both views found there."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.network import Embedder
from model.preprocess import Preprocessing


@dataclass(frozen=True)
class SimilarityMaps:
    similarity: float
    query: torch.Tensor  # (h, w), sums to `similarity`
    candidate: torch.Tensor  # (h, w), sums to `similarity`


def similarity_maps(
    embedder: Embedder, query: torch.Tensor, candidate: torch.Tensor, flip_tta: bool = False
) -> SimilarityMaps:
    """The maps of two preprocessed inputs (1, S, S), computed in float32 on the embedder's
    device; with flip_tta, of the embeddings averaged with their mirror images'."""
    parameter = next(embedder.parameters())
    inputs = torch.stack([query, candidate]).to(parameter.device, torch.float32)
    if flip_tta:
        inputs = torch.cat([inputs, inputs.flip(-1)])
    with torch.inference_mode():
        terms = embedder.location_terms(embedder.backbone.features(inputs).float())
        # Each view's terms sum to its unit embedding, as the views are averaged after
        # normalisation (model/inference.py, flip_averaged).
        terms = terms / terms.sum(dim=(2, 3)).norm(dim=1)[:, None, None, None]
        if flip_tta:  # each mirror cell onto the cell of the image it lies over
            terms = terms[:2] + terms[2:].flip(-1)
        z = terms.sum(dim=(2, 3))
        norms = z.norm(dim=1)
        unit = z / norms[:, None]
        query_map = torch.einsum("dhw,d->hw", terms[0], unit[1]) / norms[0]
        candidate_map = torch.einsum("dhw,d->hw", terms[1], unit[0]) / norms[1]
        similarity = float(unit[0] @ unit[1])
    return SimilarityMaps(similarity, query_map.cpu(), candidate_map.cpu())


def input_region(
    height: int, width: int, prep: Preprocessing, crop_side_px: int
) -> dict[str, float]:
    """The square of the original (in its pixels) that the network's input shows: the central
    crop of `crop_side_px` (or the largest that fits), resized, then its central input-size crop."""
    side = min(crop_side_px, height, width)
    scale = side / prep.resize
    margin = (prep.resize - prep.input_size) // 2
    return {
        "x": (width - side) // 2 + margin * scale,
        "y": (height - side) // 2 + margin * scale,
        "width": prep.input_size * scale,
        "height": prep.input_size * scale,
    }
