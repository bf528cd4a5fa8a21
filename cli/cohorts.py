"""`radmatch synth`, `train`, `calibrate`, `evaluate` and `quantize`: phantom cohorts, the embedder,
its likelihood ratios, how well it matches, and what int8 costs it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import (
    Subcommands,
    add_backend_option,
    add_cohort_options,
    load_settings,
    read_cohort_records,
    with_backend,
)
from training.config import add_config_options, overrides_from

if TYPE_CHECKING:
    from training.embedders import RecordEmbedder


def add_commands(commands: Subcommands) -> None:
    _add_synth(commands)
    _add_train(commands)
    _add_calibrate(commands)
    _add_evaluate(commands)
    _add_quantize(commands)


def _add_synth(commands: Subcommands) -> None:
    synth = commands.add_parser("synth", help="generate a phantom knee cohort")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--subjects", type=int, required=True, help="number of people")
    synth.add_argument("--seed", type=int, default=0, help="cohort seed (people differ per seed)")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.add_argument("--no-dicom", action="store_true", help="write PNG only")
    synth.set_defaults(run=_synth)


def _add_train(commands: Subcommands) -> None:
    train = commands.add_parser(
        "train", help="train the embedder (AdaTriplet with AutoMargin by default)"
    )
    add_cohort_options(train, split="its people outside the test split")
    train.add_argument("--preset", default="cpu", help="paper, cpu or smoke (default: cpu)")
    train.add_argument("--config", type=Path, help="TOML file of options over the preset")
    train.add_argument("--out", type=Path, required=True, help="run folder: checkpoint.pt, last.pt")
    train.add_argument(
        "--no-resume", action="store_true", help="start over even if the folder holds a run"
    )
    add_config_options(train)
    train.set_defaults(run=_train)


def _add_calibrate(commands: Subcommands) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="fit a checkpoint's similarity -> likelihood ratio calibration, in place",
        description="Calibrate a checkpoint file in place (one not yet registered with the "
        "service) on people it never trained on: a knee manifest's people, or only the test split "
        "of a ChestX-ray14 release or of the manifest the checkpoint was trained on. Rewrites the "
        "checkpoint and its .sha256 and prints the pairs, ELUB bounds and cross-validated Cllr.",
    )
    calibrate.add_argument("--checkpoint", type=Path, required=True, help="radmatch train's file")
    add_cohort_options(calibrate, split="its test split")
    calibrate.add_argument(
        "--method", choices=["logistic", "kde"], default="logistic", help="default: logistic"
    )
    calibrate.add_argument("--device", default="cpu", help="torch device to embed on")
    calibrate.set_defaults(run=_calibrate)


def _add_evaluate(commands: Subcommands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="match follow-up visits against baselines, by time since baseline"
    )
    add_cohort_options(evaluate, split="its test split")
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
    add_backend_option(evaluate)
    evaluate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write metrics.json, metrics.md, evaluation.png (and, for a calibrated checkpoint, "
        "tippett.png, ece.png, pav.png, scores.png)",
    )
    evaluate.set_defaults(run=_evaluate)


def _add_quantize(commands: Subcommands) -> None:
    quantize = commands.add_parser(
        "quantize",
        help="make a checkpoint's int8 ONNX file and measure its accuracy and speed against fp32",
    )
    quantize.add_argument("--checkpoint", type=Path, required=True, help="a trained embedder")
    quantize.add_argument(
        "--training-cohort",
        type=Path,
        required=True,
        help="the manifest (or ChestX-ray14 folder) it trained on: calibration images come from "
        "its training people",
    )
    add_cohort_options(quantize, split="its test split")
    quantize.set_defaults(run=_quantize)


def synthesize_cohort(
    out: Path, subjects: int, seed: int, dicom: bool, workers: int | None = None
) -> Path:
    """Generate a phantom cohort; print and return its manifest's path."""
    from training.phantom.cohort import CohortSpec, synthesize

    spec = CohortSpec(out=out, subjects=subjects, seed=seed, dicom=dicom)
    try:
        manifest = synthesize(spec, workers=workers)
    except ValueError as error:
        raise SystemExit(f"radmatch synth: {error}") from None
    print(manifest)
    return manifest


def train_embedder(
    cohort: Path,
    out: Path,
    preset: str,
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = True,
) -> Path:
    """Train on a knee manifest or a ChestX-ray14 release; print and return the checkpoint's path."""
    from training.config import resolve_config
    from training.train import train

    try:
        config = resolve_config(preset, config_file, overrides)
        checkpoint = train(config, cohort, out, resume=resume)
    except (ValueError, OSError) as error:  # bad options, manifest or data: say which
        raise SystemExit(f"radmatch train: {error}") from None
    print(checkpoint)
    return checkpoint


def _synth(args: argparse.Namespace) -> int:
    synthesize_cohort(args.out, args.subjects, args.seed, not args.no_dicom, args.workers)
    return 0


def _train(args: argparse.Namespace) -> int:
    cohort = args.manifest or args.chestxray14
    overrides = overrides_from(args)
    train_embedder(cohort, args.out, args.preset, args.config, overrides, not args.no_resume)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from model.checkpoint import CheckpointError, load_checkpoint
    from training.calibration.fitting import (
        calibrate_checkpoint,
        calibration_summary,
        manifest_calibration_records,
    )

    cohort = args.manifest or args.chestxray14
    try:
        trained_on = load_checkpoint(args.checkpoint).info.get("manifest_sha256")
        records, source = manifest_calibration_records(cohort, trained_on_sha256=trained_on)
        sha256 = calibrate_checkpoint(
            args.checkpoint, records, source=source, method=args.method, device=args.device
        )
    except (CheckpointError, ValueError, OSError) as error:
        raise SystemExit(f"radmatch calibrate: {error}") from None
    print(calibration_summary(load_checkpoint(args.checkpoint).info["calibration"]))
    print(f"{args.checkpoint}: sha256 {sha256}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.protocol import evaluate_embeddings, metrics_table, protocol_groups
    from training.report import verification_table, write_figure

    records, _ = read_cohort_records("evaluate", args.manifest, args.chestxray14)
    try:
        protocol_groups(records)  # refuse a cohort without follow-ups before embedding it
    except ValueError as error:
        raise SystemExit(f"radmatch evaluate: {error}") from None
    embed, calibration = _evaluation_embedder(args)
    embeddings = embed(records)
    report = evaluate_embeddings(records, embeddings)
    tables = metrics_table(report) + "\n\n" + verification_table(report["verification"])
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    if isinstance(calibration, str):
        report["calibration"], calibration_text = None, f"calibration: none; {calibration}"
    else:
        from training.calibrated_evaluation import calibration_table, evaluate_calibration

        report["calibration"] = evaluate_calibration(records, embeddings, calibration, args.out)
        calibration_text = calibration_table(report["calibration"])
    tables += "\n\n" + calibration_text
    print(tables)
    if args.out is not None:
        (args.out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "metrics.md").write_text(tables + "\n")
        write_figure(args.out / "evaluation.png", report)
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from app.serving.model_versions import load_embedding_model
    from model.backends import BackendError
    from model.checkpoint import CheckpointError
    from model.int8 import ACCURACY_BOUND_PP
    from training.cohorts import CohortFormatError
    from training.int8_trial import (
        CALIBRATION_IMAGES,
        calibration_sample,
        run_int8_trial,
        training_images,
    )

    test_cohort = args.manifest or args.chestxray14
    test, test_sha256 = read_cohort_records("quantize", args.manifest, args.chestxray14)
    settings = load_settings().model_copy(
        update={"device": "cpu", "precision": "fp32", "inference_backend": "onnxruntime"}
    )
    try:
        model = load_embedding_model(args.checkpoint, settings)
        calibration = calibration_sample(
            training_images(model, args.training_cohort), CALIBRATION_IMAGES
        )
        if test_sha256 == model.checkpoint.info.get("manifest_sha256") and args.manifest:
            raise ValueError(f"{test_cohort} is the cohort it trained on: test on other people")
        sources = {
            "calibration": {"cohort": str(args.training_cohort)},
            "test": {"cohort": str(test_cohort), "sha256": test_sha256},
        }
        record = run_int8_trial(model, calibration, test, sources)
    except (CheckpointError, BackendError, CohortFormatError, ValueError, OSError) as error:
        raise SystemExit(f"radmatch quantize: {error}") from None
    print(json.dumps({k: record[k] for k in ("fp32", "int8", "loss_pp", "speed")}, indent=2))
    verdict = "may serve it" if record["accepted"] else "is refused for it"
    print(
        f"precision int8 {verdict}: the bound is {ACCURACY_BOUND_PP} percentage points of CMC "
        f"top-1 and of mAP ({args.checkpoint}.int8.json)"
    )
    return 0 if record["accepted"] else 1


def _evaluation_embedder(args: argparse.Namespace) -> tuple[RecordEmbedder, dict[str, Any] | str]:
    """The embedder to evaluate, and its checkpoint's calibration or why there is none."""
    from app.serving.model_versions import load_embedding_model
    from model.backends import BackendError
    from model.checkpoint import CheckpointError
    from training.embedders import baseline_embedder, model_embedder

    if args.checkpoint is None:
        embed = baseline_embedder(args.embedder, args.input_size)
        return embed, f"{args.embedder} is a reference embedder, which has no calibration"
    # As the service embeds, with its backend and threads, but always in float32.
    settings = with_backend(load_settings(), args.backend)
    settings = settings.model_copy(update={"device": args.device, "precision": "fp32"})
    try:
        model = load_embedding_model(args.checkpoint, settings)
    except (CheckpointError, BackendError, OSError) as error:
        raise SystemExit(f"radmatch evaluate: {error}") from None
    reason = "the checkpoint carries no calibration (radmatch calibrate adds one)"
    return model_embedder(model), model.checkpoint.info.get("calibration") or reason
