"""The paper's loss comparison on the phantom cohort: Triplet, Triplet-AM, AdaTriplet and
AdaTriplet-AM, several seeds each, trained by `training.train` on one cohort and evaluated by the
paper's protocol on another (other people), beside the raw-pixel baseline.

Each run trains in its own folder under --runs (checkpoint, last.pt), so an interrupted run
resumes where it stopped, and each finished run's test report is kept under --records
(PRESET-LOSS-seedN.json, with the configuration it trained with, the date and the machine). A
record is reused while the configuration is unchanged, so the twelve runs of a full-length
benchmark can be spread over several sittings and machines. Prints one JSON object and writes it
and a Markdown table to DOCS/NAME.{json,md}.

    .venv/bin/python -m bench.phantom_benchmark --preset cpu --epochs 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

import torch

from bench.ann import cpu_model
from model.checkpoint import Checkpoint, load_checkpoint
from model.inference import embed_inputs, flip_averaged
from model.preprocess import Preprocessing
from training.cohorts import read_cohort
from training.config import TrainConfig, resolve_config
from training.embedders import raw_pixels, record_inputs
from training.phantom.cohort import CohortSpec, synthesize
from training.protocol import METRICS, evaluate_by_interval, evaluate_embeddings
from training.records import ImageRecord
from training.train import RESUMABLE_CHANGES, computes_bf16, train

LOSSES = ("triplet", "triplet-am", "adatriplet", "adatriplet-am")
LABELS = {
    "triplet": "Triplet",
    "triplet-am": "Triplet-AM",
    "adatriplet": "AdaTriplet",
    "adatriplet-am": "AdaTriplet-AM",
    "raw-pixels": "raw pixels",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--train-seed", type=int, default=2000)
    parser.add_argument("--train-subjects", type=int, default=150)
    parser.add_argument("--test-seed", type=int, default=1000)
    parser.add_argument("--test-subjects", type=int, default=200)
    parser.add_argument("--runs", type=Path, default=Path("runs/phantom-benchmark"))
    parser.add_argument("--records", type=Path, default=Path("docs/results/accuracy/phantom_runs"))
    parser.add_argument("--docs", type=Path, default=Path("docs/results"))
    parser.add_argument("--name", default="phantom_benchmark", help="DOCS/NAME.{json,md}")
    parser.add_argument(
        "--recorded-only", action="store_true", help="train nothing: report the recorded runs"
    )
    args = parser.parse_args()
    started = time.perf_counter()

    train_manifest = cohort_manifest(args.train_seed, args.train_subjects)
    test, test_sha256 = read_cohort(cohort_manifest(args.test_seed, args.test_subjects))
    cohorts = {"train_sha256": read_cohort(train_manifest)[1], "test_sha256": test_sha256}
    base = resolve_config(args.preset, overrides={"epochs": args.epochs})
    prep = Preprocessing(input_size=base.input_size)
    test_inputs = record_inputs(test, prep)

    reports: dict[str, list[dict]] = {"raw-pixels": [evaluate_by_interval(test, raw_pixels(prep))]}
    runs, missing = [], []
    for seed in args.seeds:  # seed by seed, so that a benchmark cut short compares the losses
        for loss in args.losses:
            config = resolve_config(
                args.preset, overrides={"epochs": args.epochs, "loss": loss, "seed": seed}
            )
            record = args.records / f"{args.preset}-{loss}-seed{seed}.json"
            report = recorded_report(record, config, cohorts)
            if report is None and args.recorded_only:
                missing.append({"loss": loss, "seed": seed})
                continue
            if report is None:
                test_set = (test, test_inputs)
                report = train_and_evaluate(config, train_manifest, test_set, cohorts, args.runs)
                record.parent.mkdir(parents=True, exist_ok=True)
                record.write_text(json.dumps(report, indent=2) + "\n")
            reports.setdefault(loss, []).append(report)
            runs.append(report["run"])

    result = {
        "bench": "phantom_benchmark",
        "preset": args.preset,
        "config": asdict(base),
        "seeds": args.seeds,
        "train_seed": args.train_seed,
        "test_seed": args.test_seed,
        "test_people": len({r.person_id for r in test}),
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "summary": {loss: summarise(r) for loss, r in reports.items()},
        "runs": [{k: v for k, v in run.items() if k not in ("history", "config")} for run in runs],
        "missing": missing,
    }
    print(json.dumps(result))
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args, args.docs / f"{args.name}.md")


def train_and_evaluate(
    config: TrainConfig,
    manifest: Path,
    test: tuple[list[ImageRecord], torch.Tensor],
    cohorts: dict[str, str],
    runs: Path,
) -> dict:
    """Train one run (resuming its folder) and score its selected checkpoint on the test people."""
    started = time.perf_counter()
    out = runs / f"{config.loss}-seed{config.seed}"
    checkpoint = load_checkpoint(train(config, manifest, out, progress=False))
    records, inputs = test
    report = evaluate_embeddings(records, checkpoint_embeddings(checkpoint, inputs))
    report["run"] = {
        "loss": config.loss,
        "seed": config.seed,
        "date": date.today().isoformat(),
        "machine": machine(config),
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "selected_epoch": checkpoint.info["metrics"]["epoch"],
        "config": asdict(config),
        "cohorts": cohorts,
        "history": checkpoint.info["history"],
    }
    return report


def recorded_report(record: Path, config: TrainConfig, cohorts: dict[str, str]) -> dict | None:
    """The report kept for this run if it trained with this configuration (up to the options that
    do not change what is learned, the number of epochs aside) on these cohorts, else None."""
    if not record.exists():
        return None
    report = json.loads(record.read_text())
    recorded, wanted = report["run"]["config"], asdict(config)
    same_config = all(
        recorded.get(key) == value
        for key, value in wanted.items()
        if key == "epochs" or key not in RESUMABLE_CHANGES
    )
    return report if same_config and report["run"]["cohorts"] == cohorts else None


def machine(config: TrainConfig) -> str:
    """The machine a run trained on and the precision it computed in, as the results pages say."""
    precision = "bfloat16" if config.amp and computes_bf16(torch.device("cpu")) else "float32"
    return f"{os.cpu_count()} CPU cores ({cpu_model()}), {precision}"


def checkpoint_embeddings(checkpoint: Checkpoint, inputs: torch.Tensor) -> torch.Tensor:
    """The embeddings of preprocessed inputs as the service computes them (flip TTA included)."""
    network = checkpoint.embedder
    return flip_averaged(lambda x: embed_inputs(network, x), inputs, checkpoint.preprocessing)


def cohort_manifest(seed: int, subjects: int) -> Path:
    manifest = Path("data") / f"phantom-{seed}" / "manifest.csv"
    if not manifest.exists():
        synthesize(CohortSpec(out=manifest.parent, subjects=subjects, seed=seed, dicom=False))
    return manifest


def summarise(reports: list[dict]) -> dict[str, dict[str, list[float]]]:
    """{metric: {interval: [mean, sample standard deviation]}} in percent over the seeds."""
    intervals = reports[0]["intervals"]
    summary = {}
    for metric, value in METRICS.items():
        summary[metric] = {}
        for interval in intervals:
            values = [100 * value(r["intervals"][interval]) for r in reports]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[metric][interval] = [statistics.fmean(values), spread]
    return summary


def write_markdown(result: dict, args: argparse.Namespace, path: Path) -> None:
    summary = result["summary"]
    intervals = list(next(iter(summary.values()))["mAP"])
    header = ["metric", "loss", "seeds"]
    header += [f"{int(n) // 12} y" if n != "all" else "all" for n in intervals]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    seeds = {loss: sum(r["loss"] == loss for r in result["runs"]) for loss in summary}
    for metric in METRICS:
        for loss, by_metric in summary.items():
            deterministic = loss == "raw-pixels"
            single = deterministic or seeds[loss] == 1  # no spread to show
            cells = [_cell(*by_metric[metric][n], single) for n in intervals]
            count = "-" if deterministic else str(seeds[loss])
            table.append(f"| {metric} | {LABELS[loss]} | {count} | " + " | ".join(cells) + " |")
    config = result["config"]
    command = (
        f".venv/bin/python -m bench.phantom_benchmark --preset {result['preset']}"
        + (f" --epochs {args.epochs}" if args.epochs is not None else "")
        + f" --seeds {' '.join(map(str, result['seeds']))}"
        + (f" --losses {' '.join(args.losses)}" if list(args.losses) != list(LOSSES) else "")
    )
    lines = [
        "# Loss comparison on the phantom cohort",
        "",
        "Each run's date, machine and minutes are listed below its table. "
        f"Training cohort: phantom seed {result['train_seed']} "
        f"({round(100 * config['val_fraction'])}% of its people held out for model selection by "
        f"validation mAP); test cohort: phantom seed {result['test_seed']}, "
        f"{result['test_people']} other people, evaluated by the paper's protocol (first visit = "
        "gallery, both knees of a person are one identity). Mean ± standard deviation over "
        "each loss's training seeds (the seeds column), in percent. Raw pixels is deterministic.",
        "",
        f"Preset `{result['preset']}`: {config['input_size']} px, batch "
        f"{config['people_per_batch']} people x {config['images_per_person']} images, Adam lr "
        f"{config['lr']:g}, weight decay {config['weight_decay']:g}, {config['epochs']} epochs, "
        f"from scratch, semihard mining, initial margin {config['margin']} and beta "
        f"{config['beta']} (AutoMargin K_delta = K_an = 2)"
        + (
            f", identity term of weight {config['classification_weight']:g} beside each loss"
            if config["classification_weight"] > 0
            else ""
        )
        + ". Produced by:",
        "",
        "```",
        command,
        "```",
        "",
        *table,
        "",
        "## Runs",
        "",
        *runs_table(result),
        "",
    ]
    path.write_text("\n".join(lines))


def runs_table(result: dict) -> list[str]:
    lines = [
        "| loss | seed | minutes | selected epoch | date | machine |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {LABELS[r['loss']]} | {r['seed']} | {r['minutes']} | {r['selected_epoch']} | "
        f"{r['date']} | {r['machine']} |"
        for r in result["runs"]
    ]
    if result["missing"]:
        not_run = ", ".join(f"{LABELS[m['loss']]} seed {m['seed']}" for m in result["missing"])
        lines += ["", f"Not run yet: {not_run}."]
    return lines


def _cell(mean: float, spread: float, single: bool) -> str:
    return f"{mean:.1f}" if single else f"{mean:.1f} ± {spread:.1f}"


if __name__ == "__main__":
    main()
