"""How long one AdaTriplet loss step (forward + backward) takes on CPU at the paper's batch size.

Prints one JSON object: the median time per call of training/losses.py's AdaTripletLoss (semihard
mining, B = 128 as 32 people x 4 images, D = 128) and, on the same batch, of the loop-by-loop
oracle training/reference_loss.py (fewer repetitions: it is slow by design), their ratio, and the
absolute difference of the two loss values and gradients, which should be float32 round-off.

    .venv/bin/python -m bench.loss_step
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from training.losses import AdaTripletLoss
from training.reference_loss import reference_adatriplet_loss


def step(loss_fn, x: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor, float]:
    """One forward + backward from the raw leaf: (seconds, loss value, gradient)."""
    leaf = x.detach().clone().requires_grad_(True)
    started = time.perf_counter()
    loss = loss_fn(F.normalize(leaf, dim=1), labels)
    loss.backward()
    seconds = time.perf_counter() - started
    return seconds, loss.detach().double(), leaf.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=32)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--reference-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(args.seed)
    labels = torch.arange(args.people).repeat_interleave(args.images)
    centres = torch.randn(args.people, args.dim, generator=generator)
    x = centres[labels] + torch.randn(len(labels), args.dim, generator=generator)
    margin, beta = 0.25, 0.0

    loss_fn = AdaTripletLoss(margin=margin, beta=beta, triplets="semihard")
    for _ in range(5):
        step(loss_fn, x, labels)
    runs = [step(loss_fn, x, labels) for _ in range(args.repeats)]
    fast = statistics.median(r[0] for r in runs)
    _, value, grad = runs[-1]

    def reference(embeddings, y):
        return reference_adatriplet_loss(embeddings, y, margin, beta, 1.0, "semihard")

    slow_runs = [step(reference, x.double(), labels) for _ in range(args.reference_repeats)]
    slow = statistics.median(r[0] for r in slow_runs)
    _, ref_value, ref_grad = slow_runs[-1]
    print(
        json.dumps(
            {
                "bench": "loss_step",
                "batch": len(labels),
                "people": args.people,
                "images_per_person": args.images,
                "dim": args.dim,
                "triplets": "semihard",
                "cores": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "mined_triplets": int(loss_fn.last["triplets"]),
                "kept_pairs": int(loss_fn.last["pairs"]),
                "vectorised_ms": round(fast * 1e3, 3),
                "vectorised_repeats": args.repeats,
                "reference_ms": round(slow * 1e3, 1),
                "reference_repeats": args.reference_repeats,
                "ratio_reference_to_vectorised": round(slow / fast, 1),
                "loss": round(value.item(), 6),
                "abs_diff_loss": float(f"{abs(value - ref_value).item():.3g}"),
                "max_abs_diff_grad": float(f"{(grad.double() - ref_grad).abs().max().item():.3g}"),
            }
        )
    )


if __name__ == "__main__":
    main()
