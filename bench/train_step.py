"""Whether the loss and its mining add <= 5% to a training step over the network's forward and backward.

Builds what training/train.py builds for a preset (model.network.Embedder, the preset's loss from
training/losses.py's build_loss, by default AdaTriplet with AutoMargin and semihard mining, both
inside train.py's Objective, and its Adam optimiser) and times, on one synthetic batch of the
preset's input size and P people x K images:

- network_only: one step of train.py's own train_one_epoch with the loss swapped for a free one
  (the sum of the embeddings): forward, backward through the whole network, optimiser step;
- train_step: one step of train_one_epoch with the real loss: forward, the loss with its mining and
  AutoMargin's per-step statistics (the margins themselves change only at end_epoch), backward,
  optimiser step;
- loss: the loss alone, forward and backward, on detached embeddings of the same batch.

Both steps share one network and one optimiser and alternate, each round in the opposite order to
the last, so machine noise and drift hit both alike. Prints one JSON object: the median ms of
each, overhead_fraction = (train_step - network_only) / network_only (and the median of the
per-round differences, which cancels slow drift), loss_alone_fraction = loss / network_only,
whether the overhead is within the 5% target, the run-to-run noise of the network-only step, and
the same medians in this process's CPU time (less disturbed than wall time when other processes
share the cores).

    .venv/bin/python -m bench.train_step                                # cpu preset, 128 px, 16 x 4
    python -m bench.train_step --preset paper --device cuda --repeats 50  # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from training.config import PRESETS, resolve_config
from training.train import Objective, build_objective, input_memory_format, train_one_epoch

TARGET_FRACTION = 0.05


class NetworkOnly(nn.Module):
    """A loss that costs nothing yet needs the backward through the whole network."""

    def __init__(self):
        super().__init__()
        self.last: dict[str, torch.Tensor] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return embeddings.float().sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--batch-people", type=int, default=None, help="default: the preset's")
    parser.add_argument("--images-per-person", type=int, default=None, help="default: the preset's")
    parser.add_argument("--device", default="cpu", help='"cpu", "cuda", "auto", ...')
    parser.add_argument("--repeats", type=int, default=8, help="timed rounds (after 2 warm-ups)")
    parser.add_argument("--loss-repeats", type=int, default=5, help="loss-alone calls per round")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.repeats < 2 or args.loss_repeats < 1:
        parser.error("--repeats must be at least 2 (for the noise) and --loss-repeats at least 1")
    config = resolve_config(
        args.preset,
        overrides={
            "people_per_batch": args.batch_people,
            "images_per_person": args.images_per_person,
            "device": args.device,
        },
    )
    if config.device == "auto":  # as train.py: CUDA when present
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(config.device)
    on_gpu = device.type == "cuda"

    def synchronise() -> None:
        if on_gpu:
            torch.cuda.synchronize(device)

    torch.manual_seed(config.seed)
    objective, optimiser = build_objective(config, device, config.people_per_batch)
    network, loss_fn, amp = objective.network, objective.loss_fn, objective.amp
    network_only = Objective(network, NetworkOnly(), amp=amp)
    memory_format = input_memory_format(config, device)

    # One batch of P people x K images: each person's images share a base image, so that the
    # batch has identities for the mining to work on.
    generator = torch.Generator().manual_seed(args.seed)
    labels = torch.arange(config.people_per_batch).repeat_interleave(config.images_per_person)
    side = config.input_size
    bases = torch.randn(config.people_per_batch, 1, side, side, generator=generator)
    inputs = bases[labels] + 0.5 * torch.randn(len(labels), 1, side, side, generator=generator)
    inputs = inputs.to(device, memory_format=memory_format or torch.contiguous_format)
    labels = labels.to(device)
    batch = [(inputs, labels)]

    def step(model: nn.Module) -> Callable[[], tuple[float, float]]:
        def run() -> tuple[float, float]:
            return timed(
                lambda: train_one_epoch(model, batch, optimiser, device, memory_format, None)
            )

        return run

    def timed(call: Callable[[], object]) -> tuple[float, float]:
        """(wall seconds, this process's CPU seconds) of one call."""
        synchronise()
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        synchronise()
        return time.perf_counter() - wall, time.process_time() - cpu

    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        embeddings = network.train()(inputs)

    def loss_alone() -> tuple[float, float]:
        leaf = embeddings.detach().clone().requires_grad_(True)
        return timed(lambda: loss_fn(leaf, labels).backward())

    names = ("network_only", "train_step")
    steps = {"network_only": step(network_only), "train_step": step(objective)}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in (*names, "loss")}
    for round_ in range(-2, args.repeats):  # two warm-up rounds
        order = names if round_ % 2 == 0 else names[::-1]
        times = {name: steps[name]() for name in order}
        times["loss"] = [loss_alone() for _ in range(args.loss_repeats)]
        if round_ >= 0:
            runs["network_only"].append(times["network_only"])
            runs["train_step"].append(times["train_step"])
            runs["loss"].extend(times["loss"])

    def median(name: str, clock: int) -> float:
        return statistics.median(run[clock] for run in runs[name])

    a, b, loss_seconds = (median(name, 0) for name in (*names, "loss"))
    a_cpu, b_cpu, loss_cpu = (median(name, 1) for name in (*names, "loss"))
    paired = statistics.median(
        t[0] - n[0] for t, n in zip(runs["train_step"], runs["network_only"], strict=True)
    )
    # Run-to-run spread of the network-only step: half its interquartile range, relative.
    quartiles = statistics.quantiles([run[0] for run in runs["network_only"]], n=4)
    noise = (quartiles[2] - quartiles[0]) / 2 / a
    overhead = (b - a) / a
    ms = 1e3
    result = {
        "bench": "train_step",
        "preset": args.preset,
        "device": str(device),
        "amp": amp,
        "input_size": config.input_size,
        "batch": len(labels),
        "people_per_batch": config.people_per_batch,
        "images_per_person": config.images_per_person,
        "embedding_dim": config.embedding_dim,
        "loss": config.loss,
        "triplets": config.triplets,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "network_only_ms": round(a * ms, 2),
        "train_step_ms": round(b * ms, 2),
        "loss_ms": round(loss_seconds * ms, 3),
        "overhead_fraction": round(overhead, 4),
        "paired_overhead_fraction": round(paired / a, 4),
        "loss_alone_fraction": round(loss_seconds / a, 5),
        "target_fraction": TARGET_FRACTION,
        "met": overhead <= TARGET_FRACTION,
        "noise_fraction": round(noise, 4),
        "cpu_time": {
            "network_only_ms": round(a_cpu * ms, 2),
            "train_step_ms": round(b_cpu * ms, 2),
            "loss_ms": round(loss_cpu * ms, 3),
            "overhead_fraction": round((b_cpu - a_cpu) / a_cpu, 4),
        },
        "mined_triplets": int(loss_fn.last.get("triplets", -1)),
        "kept_pairs": int(loss_fn.last.get("pairs", -1)),
        "runs_ms": {name: [round(run[0] * ms, 1) for run in runs[name]] for name in names},
    }
    if noise > TARGET_FRACTION:
        result["note"] = (
            f"The network-only step varied by +-{noise:.0%} from run to run (half its "
            f"interquartile range), more than the {TARGET_FRACTION:.0%} target, so the end-to-end "
            "overhead_fraction is within the noise here; loss_alone_fraction, timed on its own, "
            "is the precise measure of what the loss and mining add. Rerun on an idle machine "
            "or with more --repeats."
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
