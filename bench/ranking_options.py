"""Search-time ranking options, measured on a trained embedder and people it never saw, through the
evaluation protocol of `radmatch evaluate` (training/protocol.py): CMC top-1 by interval and mAP
over all follow-ups for

- plain: each image embedded once (what the service does);
- flip TTA: the mean of an image's embedding and its mirror image's, normalised (a left knee
  mirrored looks like a right one, and both knees are one identity);
- person aggregation: people ranked by their best gallery image (max, the service's way) or by the
  mean of their best two (both knees of the baseline visit), as person-level top-1;
- database-side augmentation (DBA): each gallery embedding replaced by the normalised mean of
  itself and its nearest gallery neighbours, k = 2 and 3;
- alpha query expansion (alpha-QE): the query replaced by the normalised sum of itself and its top
  k gallery images weighted by similarity^alpha.

All of it is matrix arithmetic over the embeddings (no loops over pairs). Prints one JSON object.

    .venv/bin/python -m bench.ranking_options --checkpoint runs/cpu-preset/checkpoint.pt \\
        --manifest data/phantom-1000/manifest.csv --json /tmp/ranking.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from model.inference import EmbeddingModel
from training.cohorts import read_cohort
from training.embedders import record_inputs
from training.protocol import evaluate_embeddings, protocol_groups


def scores(records, embeddings: torch.Tensor) -> dict:
    intervals = evaluate_embeddings(records, embeddings)["intervals"]
    return {
        "cmc_top1": {name: round(100 * m["cmc"]["1"], 2) for name, m in intervals.items()},
        "mAP_all": round(100 * intervals["all"]["mAP"], 2),
    }


def person_top1(records, embeddings: torch.Tensor, best_of: int) -> float:
    """Top-1 over all follow-ups with people ranked by the mean of their best `best_of` gallery
    similarities (1: the best image)."""
    labels, gallery, groups = protocol_groups(records)
    queries = groups["all"]
    similarities = embeddings[queries] @ embeddings[gallery].T
    owners = labels[gallery]
    people = owners.unique()
    belongs = owners[None, :] == people[:, None]  # people x gallery images
    per_person = similarities[:, None, :].masked_fill(~belongs[None], -2.0)
    best = per_person.topk(best_of, dim=2).values.mean(dim=2)
    return round(100 * (people[best.argmax(dim=1)] == labels[queries]).float().mean().item(), 2)


def database_augmented(records, embeddings: torch.Tensor, k: int) -> torch.Tensor:
    _, gallery, _ = protocol_groups(records)
    vectors = embeddings[gallery]
    nearest = (vectors @ vectors.T).topk(k, dim=1).indices  # itself first
    augmented = embeddings.clone()
    augmented[gallery] = F.normalize(vectors[nearest].mean(dim=1), dim=1)
    return augmented


def query_expanded(records, embeddings: torch.Tensor, k: int, alpha: float) -> torch.Tensor:
    _, gallery, groups = protocol_groups(records)
    queries = groups["all"]
    similarities = embeddings[queries] @ embeddings[gallery].T
    top = similarities.topk(k, dim=1)
    weights = top.values.clamp(min=0) ** alpha
    neighbours = (weights[..., None] * embeddings[gallery][top.indices]).sum(dim=1)
    expanded = embeddings.clone()
    expanded[queries] = F.normalize(embeddings[queries] + neighbours, dim=1)
    return expanded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    records, sha256 = read_cohort(args.manifest)
    model = EmbeddingModel.load(args.checkpoint, "cpu", backend="auto")
    inputs = record_inputs(records, model.checkpoint.preprocessing)
    plain = torch.from_numpy(model.embed_inputs(inputs))
    mirrored = torch.from_numpy(model.embed_inputs(torch.flip(inputs, dims=[3])))
    flip_tta = F.normalize(plain + mirrored, dim=1)
    result = {
        "bench": "ranking_options",
        "checkpoint_sha256": model.sha256,
        "manifest": str(args.manifest),
        "manifest_sha256": sha256,
        "images": len(records),
        "people": len({r.person_id for r in records}),
        "plain": scores(records, plain),
        "flip_tta": scores(records, flip_tta),
        "person_top1_all": {
            name: {"max": person_top1(records, e, 1), "mean_of_best_2": person_top1(records, e, 2)}
            for name, e in (("plain", plain), ("flip_tta", flip_tta))
        },
        "dba": {f"k{k}": scores(records, database_augmented(records, plain, k)) for k in (2, 3)},
        "alpha_qe": {
            f"k{k}_alpha{alpha}": scores(records, query_expanded(records, plain, k, alpha))
            for k in (1, 2)
            for alpha in (1.0, 3.0)
        },
    }
    print(json.dumps(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
