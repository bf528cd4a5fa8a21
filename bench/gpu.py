"""Everything measured on one GPU, in one run: embedding throughput at 256 px (fp32 and bfloat16,
channels-last, as the service embeds), exact search of a 10,000,000-vector gallery per batch of
queries, and the `paper` preset trained as in docs/method.md (256 px, 32 people x 4 images, Adam
1e-4) on phantom cohorts made on the spot, evaluated by the paper's protocol on other people. Each
rate is set beside the H200's ceilings (about 790 TFLOP/s bf16 matrix rate, 4.3 TB/s memory
bandwidth) as a fraction of the limit. Prints one JSON object (and writes it to --json when given).

    python -m bench.gpu --json $OUT/gpu.json          # on a machine with a CUDA GPU

On a CPU the same script runs with tiny settings, to check it before spending GPU time:

    .venv/bin/python -m bench.gpu --device cpu --train-subjects 12 --test-subjects 8 --epochs 1 \
        --search-vectors 200000 --query-batch 64
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
from torch.utils.flop_counter import FlopCounterMode

from model.checkpoint import load_checkpoint
from model.inference import embed_inputs
from model.network import Embedder
from training.cohorts import read_knee_manifest
from training.config import resolve_config
from training.embedders import checkpoint_embedder
from training.phantom.cohort import CohortSpec, synthesize
from training.protocol import evaluate_by_interval
from training.train import train

INPUT_SIZE = 256
PEAK_BF16_TFLOPS = 790.0  # H200 dense bfloat16 matrix rate
PEAK_MEMORY_TBPS = 4.3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="adatriplet-am")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--train-subjects", type=int, default=300)
    parser.add_argument("--test-subjects", type=int, default=200)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--search-vectors", type=int, default=10_000_000)
    parser.add_argument("--query-batch", type=int, default=1024)
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
    flops = network_flops(INPUT_SIZE)
    result["ceilings"] = {"bf16_tflops": PEAK_BF16_TFLOPS, "memory_tb_per_s": PEAK_MEMORY_TBPS}
    result["network_gflops_per_image"] = round(flops / 1e9, 3)
    result["embedding"] = {}
    for precision in ("fp32", "bf16"):
        rate = embedding_throughput(args.device, precision)
        result["embedding"][precision] = {
            "images_per_s": rate,
            "tflops": round(rate * flops / 1e12, 1),
            "fraction_of_bf16_peak": round(rate * flops / 1e12 / PEAK_BF16_TFLOPS, 4),
        }
    result["embedding"]["bf16_vs_fp32_max_cosine_gap"] = precision_gap(args.device)
    result["exact_search"] = exact_search(args.device, args.search_vectors, args.query_batch)

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
            # forward + backward is about three forwards' arithmetic
            "fraction_of_bf16_peak": round(
                3 * flops * steps * config.batch_size / epoch_seconds / 1e12 / PEAK_BF16_TFLOPS, 4
            ),
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


def network_flops(size: int) -> float:
    """Floating-point operations of one image's forward pass (2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        Embedder().eval()(torch.zeros(1, 1, size, size))
    return float(counter.get_total_flops())


def precision_gap(device: str, images: int = 64) -> float:
    """The largest cosine difference between bfloat16 and float32 embeddings of the same inputs."""
    network = Embedder().to(device).eval()
    inputs = torch.rand(images, 1, INPUT_SIZE, INPUT_SIZE)
    fp32 = embed_inputs(network, inputs, precision="fp32")
    bf16 = embed_inputs(network, inputs, precision="bf16")
    return round(float((1 - (fp32 * bf16).sum(dim=1)).abs().max()), 6)


@torch.inference_mode()
def exact_search(device: str, vectors: int, query_batch: int, k: int = 10) -> dict:
    """A gallery of unit vectors (bfloat16, as a GPU keeps one) searched exactly, a batch of
    queries at a time: one matrix product and top-k per chunk of the gallery, then a merge. The
    answers are checked against float32 for a few queries."""
    dim, chunk = 128, 1_000_000
    generator = torch.Generator(device=device).manual_seed(0)
    gallery = torch.randn(vectors, dim, device=device, generator=generator)
    gallery = torch.nn.functional.normalize(gallery, dim=1).to(torch.bfloat16)
    queries = torch.nn.functional.normalize(
        torch.randn(query_batch, dim, device=device, generator=generator), dim=1
    )

    def search(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        best_scores, best_ids = [], []
        for start in range(0, vectors, chunk):
            scores = batch.to(torch.bfloat16) @ gallery[start : start + chunk].T
            top = scores.float().topk(min(k, scores.shape[1]), dim=1)
            best_scores.append(top.values)
            best_ids.append(top.indices + start)
        merged = torch.cat(best_scores, dim=1).topk(k, dim=1)
        return merged.values, torch.cat(best_ids, dim=1).gather(1, merged.indices)

    search(queries)  # warm-up
    _synchronise(device)
    repeats = 5
    started = time.perf_counter()
    for _ in range(repeats):
        _, ids = search(queries)
    _synchronise(device)
    seconds = (time.perf_counter() - started) / repeats
    check = queries[:16]
    truth = (check @ gallery.float().T).topk(k, dim=1).indices
    agreement = float((ids[:16, :, None] == truth[:, None, :]).any(dim=2).float().mean())
    gallery_bytes = vectors * dim * 2
    return {
        "gallery_vectors": vectors,
        "query_batch": query_batch,
        "k": k,
        "ms_per_batch": round(seconds * 1e3, 2),
        "queries_per_s": round(query_batch / seconds, 1),
        "fraction_of_memory_bandwidth": round(gallery_bytes / seconds / 1e12 / PEAK_MEMORY_TBPS, 4),
        "fraction_of_bf16_peak": round(
            2 * query_batch * vectors * dim / seconds / 1e12 / PEAK_BF16_TFLOPS, 4
        ),
        "recall_at_k_vs_fp32": round(agreement, 4),
    }


def embedding_throughput(
    device: str, precision: str, batch: int = 256, size: int = INPUT_SIZE
) -> float:
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
