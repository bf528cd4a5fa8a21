"""The `paper` preset on one GPU: phantom cohorts made on the spot, one loss trained as PAPER.md
trains it (256 px, 32 people x 4 images, Adam 1e-4, 100 epochs), evaluated by the paper's protocol
on other people; with training and embedding throughput. Prints one JSON object (and writes it to
--json when given).

    python bench/gpu.py --json $OUT/gpu.json          # on a machine with a CUDA GPU

On a CPU the same script runs with tiny settings, to check it before spending GPU time:

    .venv/bin/python bench/gpu.py --device cpu --train-subjects 12 --test-subjects 8 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from model.checkpoint import load_checkpoint
from model.network import Embedder
from training.cohorts import read_knee_manifest
from training.config import resolve_config
from training.embedders import checkpoint_embedder
from training.phantom.cohort import CohortSpec, synthesize
from training.protocol import evaluate_by_interval
from training.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="adatriplet-am")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--train-subjects", type=int, default=300)
    parser.add_argument("--test-subjects", type=int, default=200)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    result: dict = {
        "bench": "gpu",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "cpu_cores": cores,
        "python": platform.python_version(),
    }
    result["embedding_images_per_s"] = {
        precision: embedding_throughput(args.device, precision) for precision in ("fp32", "bf16")
    }

    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        manifests = {
            name: synthesize(
                CohortSpec(out=Path(scratch) / name, subjects=subjects, seed=seed, dicom=False),
                workers=cores,
                progress=False,
            )
            for name, subjects, seed in (
                ("train", args.train_subjects, 2000),
                ("test", args.test_subjects, 1000),
            )
        }
        result["synth_seconds"] = round(time.perf_counter() - started, 1)

        config = resolve_config(
            "paper",
            overrides={
                "loss": args.loss,
                "epochs": args.epochs,
                "device": args.device,
                "cache_images": True,
                "workers": max(1, min(cores - 2, 12)),
            },
        )
        started = time.perf_counter()
        checkpoint_path = train(config, manifests["train"], Path(scratch) / "run", progress=False)
        result["train_seconds"] = round(time.perf_counter() - started, 1)
        info = load_checkpoint(checkpoint_path).info
        history = torch.load(Path(scratch) / "run" / "last.pt", weights_only=True)["state"][
            "history"
        ]
        epoch_seconds = sum(e["seconds"] for e in history)
        steps = sum(e["steps"] for e in history)
        result["training"] = {
            "config": info["training"],
            "selected_epoch": info["metrics"]["epoch"],
            "val_mAP": info["metrics"]["val_mAP"],
            "epochs": len(history),
            "images_per_s": round(steps * config.batch_size / epoch_seconds, 1),
            "last_epoch": history[-1],
        }
        test = read_knee_manifest(manifests["test"])
        report = evaluate_by_interval(test, checkpoint_embedder(checkpoint_path, args.device))
        result["test"] = {
            name: {"mAP": m["mAP"], "mAP@R": m["mAP@R"], "cmc": m["cmc"]}
            for name, m in report["intervals"].items()
        }
        result["verification"] = {
            k: report["verification"][k] for k in ("tpr_at_fpr", "eer", "genuine_pairs")
        }
    print(json.dumps(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def embedding_throughput(device: str, precision: str, batch: int = 256, size: int = 256) -> float:
    """Images per second through the embedder alone (inference, channels-last on a GPU)."""
    on_gpu = device.startswith("cuda")
    network = Embedder().to(device).eval()
    inputs = torch.randn(batch if on_gpu else 8, 1, size, size, device=device)
    if on_gpu:
        network = network.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(
        torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"
    )
    with torch.inference_mode(), autocast:
        for _ in range(3):
            network(inputs)
        _synchronise(device)
        started, repeats = time.perf_counter(), 20 if on_gpu else 2
        for _ in range(repeats):
            network(inputs)
        _synchronise(device)
    return round(repeats * len(inputs) / (time.perf_counter() - started), 1)


def _synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
