"""What the metric loss still asks of a trained embedder: over identity batches of its own
training people (P people x K images, as it trained, without augmentation), how many triplets
semi-hard mining keeps and how many negative pairs AdaTriplet's term keeps, at the margin and beta
the run ended with and at the fixed ones it started from, with the statistics AutoMargin sets
them from (mean Delta over all triplets, mean similarity over all negative pairs), and how hard
each of AdaTriplet's two terms pulls: the norm of its gradient with respect to the batch's
embeddings.

A loss that keeps almost nothing has stopped shaping the embedding; one that keeps many triplets
at a margin the data cannot reach pulls against what the rest of the objective learned. Both terms
are means over what they keep, so a term that keeps a few pairs still pulls at full strength.
Prints one JSON object.

    .venv/bin/python -m bench.loss_activity \\
        --checkpoint runs/phantom-benchmark/adatriplet-am-seed2/checkpoint.pt \\
        --manifest data/phantom-2000/manifest.csv
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from model.backends import embed_inputs
from model.checkpoint import load_checkpoint
from training.cohorts import read_cohort
from training.data import IdentityBatches
from training.embedders import record_inputs
from training.losses import AdaTripletLoss, TripletLoss
from training.train import split_people


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True, help="the cohort it trained on")
    parser.add_argument("--batches", type=int, default=50)
    args = parser.parse_args()

    checkpoint = load_checkpoint(args.checkpoint)
    config = checkpoint.info["training"]
    records, _ = read_cohort(args.manifest)
    train_records, _ = split_people(records, config["val_fraction"], config["seed"])
    people = {pid: i for i, pid in enumerate(sorted({r.person_id for r in train_records}))}
    labels = torch.tensor([people[r.person_id] for r in train_records])
    inputs = record_inputs(train_records, checkpoint.preprocessing)
    embeddings = embed_inputs(checkpoint.embedder.eval(), inputs)  # the view training saw
    plan = IdentityBatches(
        labels, config["people_per_batch"], config["images_per_person"], args.batches, seed=1
    )
    batches = [torch.tensor([index for index, _ in batch]) for batch in plan]

    ended = checkpoint.info["history"][-1]  # the selected epoch's
    settings = {
        "ended": {"margin": ended["margin"], "beta": ended.get("beta", config["beta"])},
        "fixed": {"margin": config["margin"], "beta": config["beta"]},
    }
    result = {
        "bench": "loss_activity",
        "checkpoint_sha256": checkpoint.sha256,
        "loss": config["loss"],
        "selected_epoch": checkpoint.info["metrics"]["epoch"],
        "batches": len(batches),
        "batch": f"{config['people_per_batch']} people x {config['images_per_person']} images",
    }
    for name, setting in settings.items():
        result[name] = setting | activity(embeddings, labels, batches, **setting)
    print(json.dumps(result, indent=2))


def activity(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    batches: list[torch.Tensor],
    *,
    margin: float,
    beta: float,
) -> dict[str, float]:
    """Per batch on average: the triplets semi-hard mining keeps at this margin, the negative
    pairs at or above this beta, the gradient norm of the triplet term and of the pair term, and
    AutoMargin's next margin and beta from these batches."""
    loss = AdaTripletLoss(margin, beta, automargin=True)
    triplet_term = TripletLoss(margin)
    kept_triplets, kept_pairs, triplet_pulls, pair_pulls = [], [], [], []
    for batch in batches:
        batch_embeddings = embeddings[batch].detach().requires_grad_()
        (both_gradient,) = torch.autograd.grad(
            loss(batch_embeddings, labels[batch]), batch_embeddings
        )
        kept_triplets.append(int(loss.last["triplets"]))
        kept_pairs.append(int(loss.last["pairs"]))
        (triplet_gradient,) = torch.autograd.grad(
            triplet_term(batch_embeddings, labels[batch]), batch_embeddings
        )
        triplet_pulls.append(float(triplet_gradient.norm()))
        pair_pulls.append(float((both_gradient - triplet_gradient).norm()))
    loss.end_epoch()
    return {
        "mined_triplets_per_batch": statistics.fmean(kept_triplets),
        "kept_negative_pairs_per_batch": statistics.fmean(kept_pairs),
        "triplet_term_gradient_norm": statistics.fmean(triplet_pulls),
        "pair_term_gradient_norm": statistics.fmean(pair_pulls),
        "automargin_next_margin": loss.margin,
        "automargin_next_beta": loss.beta,
    }


if __name__ == "__main__":
    main()
