"""Is the phantom's identity signal learnable? A short, plain training run answers it.

Trains the paper's ResNet-18 embedder from scratch for a fixed wall-clock budget on one phantom cohort
(a batch-all triplet loss, P people x K images per batch, random crop, rotation and gamma), then
evaluates it by the paper's protocol on a disjoint cohort (other seed = other people) beside the
untrained network. Prints one JSON object. This probe only checks the data: the project's trainer
(AdaTriplet, AutoMargin, presets) lives in training/.

    .venv/bin/python bench/phantom_learnability.py --train-seed 2000 --test-seed 1000 --minutes 12
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from model.network import Embedder
from model.preprocess import Preprocessing, final_crop
from training.baselines import load_input, load_resized, untrained_resnet18
from training.cohorts import read_knee_manifest
from training.phantom.cohort import CohortSpec, synthesize
from training.protocol import evaluate_by_interval, metrics_table


def batch_all_triplet(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float
) -> torch.Tensor:
    """Mean hinge over every triplet of the batch that still violates the margin."""
    similarity = embeddings @ embeddings.T
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool)
    # violation[a, p, n] = phi(a, n) - phi(a, p) + margin
    violation = similarity[:, None, :] - similarity[:, :, None] + margin
    valid = positive[:, :, None] & ~same[:, None, :]
    losses = F.relu(violation) * valid
    return losses.sum() / (losses > 0).sum().clamp(min=1)


def augment(batch: torch.Tensor, prep: Preprocessing, generator: torch.Generator) -> torch.Tensor:
    n = len(batch)
    angles = (torch.rand(n, generator=generator) * 20 - 10).tolist()
    gammas = torch.exp((torch.rand(n, generator=generator) - 0.5) * 0.8).tolist()
    out = []
    for image, angle, gamma in zip(batch, angles, gammas, strict=True):
        image = TF.rotate(image, angle, interpolation=TF.InterpolationMode.BILINEAR)
        image = image.clamp(0, 1) ** gamma
        out.append(final_crop(image, prep, generator))
    return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seed", type=int, default=2000)
    parser.add_argument("--train-subjects", type=int, default=150)
    parser.add_argument("--test-seed", type=int, default=1000)
    parser.add_argument("--test-subjects", type=int, default=200)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--people-per-batch", type=int, default=16)
    parser.add_argument("--docs", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)

    manifests = {}
    for seed, subjects in (
        (args.train_seed, args.train_subjects),
        (args.test_seed, args.test_subjects),
    ):
        manifest = Path("data") / f"phantom-{seed}" / "manifest.csv"
        if not manifest.exists():
            synthesize(CohortSpec(out=manifest.parent, subjects=subjects, seed=seed, dicom=False))
        manifests[seed] = manifest

    prep = Preprocessing(input_size=args.input_size)
    # Held in memory resized but uncropped (0..1), so that crops and rotations are drawn per step.
    train = read_knee_manifest(manifests[args.train_seed])
    images = torch.stack([load_resized(r, prep) for r in train])
    people = sorted({r.person_id for r in train})
    labels = torch.tensor([people.index(r.person_id) for r in train])
    by_person = [torch.nonzero(labels == i).flatten() for i in range(len(people))]

    network = Embedder()
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-4, weight_decay=1e-4)
    k = 4
    started, steps, losses = time.perf_counter(), 0, []
    while time.perf_counter() - started < args.minutes * 60:
        chosen = torch.randperm(len(people), generator=generator)[: args.people_per_batch]
        index = torch.cat(
            [
                by_person[p][torch.randint(len(by_person[p]), (k,), generator=generator)]
                for p in chosen
            ]
        )
        inputs = augment(images[index], prep, generator)
        loss = batch_all_triplet(network(inputs), labels[index], margin=0.2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        steps += 1
    network.eval()

    test = read_knee_manifest(manifests[args.test_seed])

    @torch.inference_mode()
    def trained(records):
        inputs = torch.stack([load_input(r, prep) for r in records])
        return torch.cat([network(b) for b in inputs.split(128)])

    reports = {
        "trained": evaluate_by_interval(test, trained),
        "untrained": evaluate_by_interval(test, untrained_resnet18(prep)),
    }
    result = {
        "bench": "phantom_learnability",
        "train_seed": args.train_seed,
        "test_seed": args.test_seed,
        "train_people": len(people),
        "train_images": len(train),
        "test_people": len({r.person_id for r in test}),
        "input_size": args.input_size,
        "steps": steps,
        "minutes": args.minutes,
        "final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
        "reports": reports,
    }
    print(json.dumps(result))
    write_markdown(result, args.docs / "phantom_learnability.md")


def write_markdown(result: dict, path: Path) -> None:
    command = (
        f".venv/bin/python bench/phantom_learnability.py --train-seed {result['train_seed']} "
        f"--test-seed {result['test_seed']} --minutes {result['minutes']:g}"
    )
    lines = [
        "# The phantom cohort: is identity learnable?",
        "",
        f"A ResNet-18 trained from scratch for {result['minutes']:g} minutes on 2 CPU cores "
        f"({result['steps']} steps of 16 people x 4 images, batch-all triplet loss, "
        f"{result['input_size']} px inputs) on {result['train_people']} phantom people "
        f"(seed {result['train_seed']}), evaluated on {result['test_people']} other people "
        f"(seed {result['test_seed']}) by the paper's protocol. Measured "
        f"{date.today().isoformat()}. Produced by:",
        "",
        "```",
        command,
        "```",
        "",
    ]
    for name, report in result["reports"].items():
        lines += [f"## {name}", "", metrics_table(report), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
