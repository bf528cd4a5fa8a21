"""Search-time ranking options, measured on a trained embedder and people it never saw, through the
evaluation protocol of `radmatch evaluate` (training/protocol.py): CMC top-1 by interval and mAP
over all follow-ups for

- plain: each image embedded once (what the service does);
- flip TTA: the mean of an image's embedding and its mirror image's, normalised (a left knee
  mirrored looks like a right one, and both knees are one identity);
- person aggregation: people ranked by their best gallery image (max, the service's way) or by the
  mean of their best two (both knees of the baseline visit), as person-level top-1; and the same
  on a gallery of each person's first two visits (max, or the mean of the best 2, 3 or 4 images);
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


def person_top1(records, embeddings: torch.Tensor, best_of: int, gallery_visits: int = 1) -> float:
    """Top-1 over all follow-ups with people ranked by the mean of their best `best_of` gallery
    similarities (1: the best image). The gallery is each person's first `gallery_visits` visits;
    the queries are their later ones."""
    labels = protocol_groups(records)[0]
    visit = visit_order(records)
    gallery = torch.nonzero(visit < gallery_visits).flatten()
    queries = torch.nonzero(visit >= gallery_visits).flatten()
    similarities = embeddings[queries] @ embeddings[gallery].T
    scores = person_scores(similarities, labels[gallery], best_of)
    return round(100 * (scores.argmax(dim=1) == labels[queries]).float().mean().item(), 2)


def person_scores(similarities: torch.Tensor, owners: torch.Tensor, best_of: int) -> torch.Tensor:
    """(queries, people): the mean of each person's best `best_of` similarities (all of them
    where a person has fewer), -inf for a person with no gallery image."""
    people = int(owners.max()) + 1
    # Each row sorted by person, then by similarity, best first; similarities lie in [-1, 1].
    order = torch.argsort(owners[None, :] * 4.0 - similarities, dim=1)
    sorted_owners = owners[order]
    first_of_person = torch.searchsorted(owners.sort().values, torch.arange(people))
    place = torch.arange(len(owners))[None, :] - first_of_person[sorted_owners]
    kept = (place < best_of).to(similarities.dtype)
    sums = torch.zeros(len(similarities), people).scatter_add_(
        1, sorted_owners, similarities.gather(1, order) * kept
    )
    counts = torch.zeros(people).scatter_add_(0, owners, torch.ones(len(owners))).clamp(max=best_of)
    return torch.where(counts > 0, sums / counts.clamp(min=1), float("-inf"))


def visit_order(records) -> torch.Tensor:
    """Each record's visit number within its person: 0 for the first visit, 1 for the next, ..."""
    visits: dict[str, list[float]] = {}
    for record in records:
        visits.setdefault(record.person_id, []).append(record.visit_months)
    order = {pid: sorted(set(months)) for pid, months in visits.items()}
    return torch.tensor([order[r.person_id].index(r.visit_months) for r in records])


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
        # A gallery of each person's first two visits (four images), as an examiner's database
        # of people x-rayed more than once would hold: the case for averaging over images.
        "person_top1_two_visit_gallery": {
            f"mean_of_best_{m}" if m > 1 else "max": person_top1(records, plain, m, 2)
            for m in (1, 2, 3, 4)
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
