"""The training recipe, one change at a time: the `cpu` preset's recipe before the
re-identification options (constant rate, average pooling, linear head, the paper's augmentation,
no identity term), with the identity term, then with the identity term and one more option each,
and all that helped together ("recipe", the `cpu` preset as it stands). Every run trains on one
phantom cohort and is evaluated on another's people by the paper's protocol, embedding as the
service does (flip TTA where the checkpoint has it), for each seed and number of epochs asked.

Each run keeps its folder (checkpoint, last.pt, a report per length), so an interrupted ablation
resumes where it stopped; at a constant learning rate a variant's longer runs resume its shorter
one, which makes a learning curve cost only its longest run. Prints one JSON object and a Markdown
table; writes both to DOCS/NAME.{json,md} after every row.

    .venv/bin/python -m bench.recipe_ablation --epochs 15 --seeds 0
    .venv/bin/python -m bench.recipe_ablation --variants recipe --epochs 30 42 60 120 \
        --name learning_curve
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

from bench.phantom_benchmark import checkpoint_embeddings, cohort_manifest
from model.checkpoint import load_checkpoint
from model.preprocess import Preprocessing
from training.cohorts import read_knee_manifest
from training.config import resolve_config
from training.embedders import record_inputs
from training.protocol import METRICS, evaluate_embeddings
from training.records import ImageRecord
from training.train import train

# The recipe before this comparison: what the `cpu` preset trained with until then.
BEFORE = {
    "lr_schedule": "constant",
    "warmup_epochs": 0,
    "classification_weight": 0.0,
    "augmentation": "paper",
    "pooling": "avg",
    "neck": "linear",
    "last_stride": 2,
}
# The identity term helped by far the most on its own (28 points of CMC top-1 at 15 epochs), so
# the other options are measured on top of it: what each adds to it is what a recipe can gain.
IDENTITY = BEFORE | {"classification_weight": 1.0}
VARIANTS: dict[str, dict[str, Any]] = {
    "before": BEFORE,
    "identity term": IDENTITY,
    "identity + warm-up + cosine": IDENTITY | {"lr_schedule": "cosine", "warmup_epochs": 2},
    "identity + BN neck": IDENTITY | {"neck": "bn"},
    "identity + radiograph augmentation": IDENTITY | {"augmentation": "radiograph"},
    "identity + GeM pooling": IDENTITY | {"pooling": "gem"},
    "identity + last stride 1": IDENTITY | {"last_stride": 1},
    "recipe": {},  # the cpu preset as it stands
    # The triplet loss at a fixed margin as large as AutoMargin's towards the end of the recipe
    # (0.38-0.42), beside the benchmark's Triplet at 0.25: what the larger margin alone does.
    "recipe with Triplet, margin 0.4": {"loss": "triplet", "margin": 0.4},
    # AdaTriplet's negative-pair term at a quarter of its weight, between the recipe (1) and
    # Triplet-AM (0): whether a lighter pair term keeps the method without its cost.
    "recipe, pair term x 0.25": {"lambda_an": 0.25},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--epochs", type=int, nargs="+", default=[30])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train-seed", type=int, default=2000)
    parser.add_argument("--train-subjects", type=int, default=150)
    parser.add_argument("--test-seed", type=int, default=1000)
    parser.add_argument("--test-subjects", type=int, default=200)
    parser.add_argument("--runs", type=Path, default=Path("runs/recipe-ablation"))
    parser.add_argument("--docs", type=Path, default=Path("docs/results/accuracy"))
    parser.add_argument("--name", default="recipe_ablation", help="DOCS/NAME.{json,md}")
    args = parser.parse_args()

    train_manifest = cohort_manifest(args.train_seed, args.train_subjects)
    test = read_knee_manifest(cohort_manifest(args.test_seed, args.test_subjects))
    test_inputs = record_inputs(test, Preprocessing(input_size=resolve_config("cpu").input_size))
    rows = []
    for name in args.variants:
        for epochs in sorted(args.epochs):
            reports = [
                _run(name, epochs, seed, train_manifest, (test, test_inputs), args.runs)
                for seed in args.seeds
            ]
            rows.append(variant_row(name, epochs, reports))
            _write(rows, args, test)


def _write(rows: list[dict], args: argparse.Namespace, test: list[ImageRecord]) -> None:
    result = {
        "bench": args.name,
        "date": date.today().isoformat(),
        "train_seed": args.train_seed,
        "test_seed": args.test_seed,
        "test_people": len({r.person_id for r in test}),
        "seeds": args.seeds,
        "before": BEFORE,
        "rows": rows,
    }
    print(json.dumps(result))
    table = markdown_table(rows)
    print(table)
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.docs / f"{args.name}.md").write_text(table + "\n")


def _run(
    name: str,
    epochs: int,
    seed: int,
    manifest: Path,
    test: tuple[list[ImageRecord], torch.Tensor],
    runs: Path,
) -> dict:
    config = resolve_config("cpu", overrides=VARIANTS[name] | {"epochs": epochs, "seed": seed})
    # At a constant rate the first epochs do not depend on how many follow, so a longer run of the
    # variant resumes the shorter one's folder; a decaying rate depends on them.
    chained = config.lr_schedule == "constant"
    out = runs / (f"{_slug(name)}-seed{seed}" if chained else f"{_slug(name)}-e{epochs}-seed{seed}")
    report_path = out / f"report-e{epochs}.json"
    if report_path.exists():
        return json.loads(report_path.read_text())
    lengths = sorted(int(p.stem.split("-e")[1]) for p in out.glob("report-e*.json"))
    if lengths and lengths[-1] > epochs:
        raise SystemExit(f"{out} has trained past {epochs} epochs; measure it with another --runs")
    report_before = out / f"report-e{lengths[-1]}.json" if lengths else None
    minutes_before = (
        json.loads(report_before.read_text())["run"]["training_minutes"] if report_before else 0.0
    )
    started = time.perf_counter()
    checkpoint_path = train(config, manifest, out, progress=False)
    minutes = minutes_before + (time.perf_counter() - started) / 60
    checkpoint = load_checkpoint(checkpoint_path)
    records, inputs = test
    report = evaluate_embeddings(records, checkpoint_embeddings(checkpoint, inputs))
    history = checkpoint.info["history"]
    report["run"] = {
        "variant": name,
        "epochs": epochs,
        "seed": seed,
        "overrides": VARIANTS[name],
        # from the first epoch, calibration of the best checkpoint at each length included
        "training_minutes": round(minutes, 1),
        "seconds_per_epoch": round(statistics.fmean(e["seconds"] for e in history), 1),
        "selected_epoch": checkpoint.info["metrics"]["epoch"],
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    return report


FIGURES = {
    "top1_all": ("all", "CMC top-1"),
    "top1_8y": ("96", "CMC top-1"),
    "mAP_all": ("all", "mAP"),
}


def variant_row(name: str, epochs: int, reports: list[dict]) -> dict:
    """Mean and spread over the seeds, and each seed's run with its own figures."""
    runs = [r["run"] | _figures(r) for r in reports]

    def spread(key: str) -> list[float]:
        values = [run[key] for run in runs]
        return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]

    return {
        "variant": name,
        "epochs": epochs,
        **{key: spread(key) for key in FIGURES},
        "training_minutes": statistics.fmean(run["training_minutes"] for run in runs),
        "seconds_per_epoch": statistics.fmean(run["seconds_per_epoch"] for run in runs),
        "runs": runs,
    }


def _figures(report: dict) -> dict[str, float]:
    """CMC top-1 over all follow-ups and at 8 years, and mAP over all, in percent."""
    return {
        key: 100 * METRICS[metric](report["intervals"][interval])
        for key, (interval, metric) in FIGURES.items()
    }


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| variant | epochs | CMC top-1, all | CMC top-1, 8 y | mAP, all | training min | s / epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [_cell(row[key]) for key in ("top1_all", "top1_8y", "mAP_all")]
        lines.append(
            f"| {row['variant']} | {row['epochs']} | {' | '.join(cells)} | "
            f"{row['training_minutes']:.1f} | {row['seconds_per_epoch']:.1f} |"
        )
    return "\n".join(lines)


def _cell(value: list[float]) -> str:
    mean, spread = value
    return f"{mean:.1f}" if spread == 0 else f"{mean:.1f} ± {spread:.1f}"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


if __name__ == "__main__":
    main()
