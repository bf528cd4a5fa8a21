"""The `radmatch` command. Each subcommand parses its options and calls one function that tests call too;
heavy imports happen inside the subcommand so that `radmatch --help` stays instant."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.config import add_config_options, overrides_from


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="radmatch", description=__doc__.split(".")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate a phantom knee cohort")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--subjects", type=int, required=True, help="number of people")
    synth.add_argument("--seed", type=int, default=0, help="cohort seed (people differ per seed)")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.add_argument("--no-dicom", action="store_true", help="write PNG only")
    synth.set_defaults(run=_synth)

    train = commands.add_parser(
        "train", help="train the embedder (AdaTriplet with AutoMargin by default)"
    )
    _add_cohort_options(train, split="its people outside the test split")
    train.add_argument("--preset", default="cpu", help="paper, cpu or smoke (default: cpu)")
    train.add_argument("--config", type=Path, help="TOML file of options over the preset")
    train.add_argument("--out", type=Path, required=True, help="run folder: checkpoint.pt, last.pt")
    train.add_argument(
        "--no-resume", action="store_true", help="start over even if the folder holds a run"
    )
    add_config_options(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "evaluate", help="match follow-up visits against baselines, by time since baseline"
    )
    _add_cohort_options(evaluate, split="its test split")
    embedder = evaluate.add_mutually_exclusive_group(required=True)
    embedder.add_argument("--checkpoint", type=Path, help="a trained embedder (radmatch train)")
    embedder.add_argument(
        "--embedder",
        choices=["raw-pixels", "untrained-resnet18"],
        help="a reference embedder that learns nothing",
    )
    evaluate.add_argument(
        "--input-size", type=int, default=128, help="input side in px of --embedder"
    )
    evaluate.add_argument("--device", default="cpu", help="torch device for --checkpoint")
    evaluate.add_argument(
        "--out", type=Path, default=None, help="write metrics.json, metrics.md, evaluation.png"
    )
    evaluate.set_defaults(run=_evaluate)

    demo = commands.add_parser("demo", help="generate a phantom cohort and report how hard it is")
    demo.add_argument("--data-dir", type=Path, default=Path("data"))
    demo.set_defaults(run=_demo)

    args = parser.parse_args(argv)
    return args.run(args)


def _add_cohort_options(parser: argparse.ArgumentParser, split: str) -> None:
    cohort = parser.add_mutually_exclusive_group(required=True)
    cohort.add_argument("--manifest", type=Path, help="knee manifest (phantom or OAI-style)")
    cohort.add_argument(
        "--chestxray14", type=Path, metavar="ROOT", help=f"NIH ChestX-ray14 release: {split}"
    )


def _synth(args: argparse.Namespace) -> int:
    from training.phantom.cohort import CohortSpec, synthesize

    spec = CohortSpec(out=args.out, subjects=args.subjects, seed=args.seed, dicom=not args.no_dicom)
    try:
        manifest = synthesize(spec, workers=args.workers)
    except ValueError as error:
        raise SystemExit(f"radmatch synth: {error}") from None
    print(manifest)
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.config import resolve_config
    from training.train import train

    try:
        config = resolve_config(args.preset, args.config, overrides_from(args))
        cohort = args.manifest or args.chestxray14
        checkpoint = train(config, cohort, args.out, resume=not args.no_resume)
    except (ValueError, OSError) as error:  # bad options, manifest or data: say which
        raise SystemExit(f"radmatch train: {error}") from None
    print(checkpoint)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from model.checkpoint import CheckpointError
    from training.cohorts import CohortFormatError, read_cohort
    from training.embedders import baseline_embedder, checkpoint_embedder
    from training.protocol import evaluate_by_interval, metrics_table
    from training.report import verification_table, write_figure

    try:
        records, _ = read_cohort(args.manifest or args.chestxray14)
    except (CohortFormatError, OSError) as error:
        raise SystemExit(f"radmatch evaluate: {error}") from None
    if args.chestxray14 is not None:  # the paper evaluates on the official split's held-out people
        records = [r for r in records if r.split == "test"]
    try:
        if args.checkpoint is not None:
            embed = checkpoint_embedder(args.checkpoint, args.device)
        else:
            embed = baseline_embedder(args.embedder, args.input_size)
    except (CheckpointError, OSError) as error:
        raise SystemExit(f"radmatch evaluate: {error}") from None
    report = evaluate_by_interval(records, embed)
    tables = metrics_table(report) + "\n\n" + verification_table(report["verification"])
    print(tables)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "metrics.md").write_text(tables + "\n")
        write_figure(args.out / "evaluation.png", report)
    return 0


def _demo(args: argparse.Namespace) -> int:
    cohort = args.data_dir / "phantom-demo"
    if not (cohort / "manifest.csv").exists():
        main(["synth", "--out", str(cohort), "--subjects", "40", "--seed", "1"])
    print(f"\nPhantom cohort: {cohort}. Nearest neighbour on raw pixels, by time since baseline:\n")
    return main(
        ["evaluate", "--manifest", str(cohort / "manifest.csv"), "--embedder", "raw-pixels"]
    )


if __name__ == "__main__":
    sys.exit(main())
