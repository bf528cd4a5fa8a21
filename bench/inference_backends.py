"""Embedding throughput on the CPU: PyTorch eager in float32 against ONNX Runtime, on the same batch.

For input sizes 128 and 256 px and 1 and 2 threads, images per second of each on a batch of 32
phantom-like radiographs through the service's preprocessing (a seeded ResNet-18 checkpoint,
tests.support.servers.seeded_checkpoint), the ratio onnxruntime / torch (target >= 2), and how
close the two backends' embeddings are: the worst cosine over the batch (target >= 0.99999) and
the largest difference between the similarities the two give the batch's pairs. Beside them,
the same graph in int8 (model/int8.py, calibrated on the batch: speed only; its accuracy is
measured by `radmatch quantize`). These rows run as radmatch runs: OpenMP threads passive.
Each row also gives the network's arithmetic (GFLOP per image, counted by torch's FlopCounterMode)
and the rate each engine reaches, beside the best rate of a plain 1024 x 1024 float32 matrix
product on the same threads: what this CPU sustains on the densest work there is, the ceiling for
a float32 engine.

Then the same at 128 px and 2 threads with the other core busy (a `python -c "while True: pass"`
process), with and without the thread settings of model/threads.py: PyTorch with its OpenMP
threads spinning (OMP_WAIT_POLICY unset) and passive, ONNX Runtime with its threads spinning (its
default) and not (the service's). Each configuration runs in its own process, so that every
thread pool starts as the service's does; torch and ORT alternate within a run so that both meet
the same noise.

    python -m bench.inference_backends [--repeats 5] [--json out.json]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 32
AS_RADMATCH_RUNS = {"OMP_WAIT_POLICY": "PASSIVE"}  # model/threads.py
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (median)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(**json.loads(args.child))))
        return
    result = {
        "batch": BATCH,
        "cpus": len(os.sched_getaffinity(0)),
        "repeats": args.repeats,
        "throughput": [
            run_child(
                size=size, threads=threads, repeats=args.repeats, int8=True, env=AS_RADMATCH_RUNS
            )
            for size in (128, 256)
            for threads in (1, 2)
        ],
        "under_load": under_load(args.repeats),
    }
    result["min_ratio"] = min(row["ratio_ort_over_torch"] for row in result["throughput"])
    result["min_cosine"] = min(row["min_cosine"] for row in result["throughput"])
    print(json.dumps(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def under_load(repeats: int) -> dict:
    """128 px, 2 threads, idle and with a busy process, spinning threads and passive ones."""
    rows = {}
    for name, busy in (("idle", False), ("one_core_busy", True)):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for policy in ("spinning", "passive"):
                env = AS_RADMATCH_RUNS if policy == "passive" else {}
                rows[f"{name}_{policy}"] = run_child(
                    size=128, threads=2, repeats=repeats, spinning=policy == "spinning", env=env
                )
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    return rows


def run_child(env: dict[str, str] | None = None, **options) -> dict:
    """One configuration in a fresh process: OMP_WAIT_POLICY as given (unset by default)."""
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environment.update(env or {})
    environment["PYTHONPATH"] = str(REPO)
    output = subprocess.run(
        [sys.executable, "-m", "bench.inference_backends", "--child", json.dumps(options)],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def measure(
    size: int, threads: int, repeats: int, spinning: bool = False, int8: bool = False
) -> dict:
    import numpy as np
    import torch

    from bench.service_bench import radiograph_pixels
    from model.backends import OnnxForward, load_onnxruntime
    from model.inference import EmbeddingModel
    from model.int8 import quantize
    from model.onnx_file import OnnxFile
    from model.preprocess import Preprocessing, preprocess
    from model.threads import apply_threads
    from tests.support.servers import seeded_checkpoint

    apply_threads(threads)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = seeded_checkpoint(Path(scratch) / "checkpoint.pt", size)
        torch_model = EmbeddingModel.load(checkpoint, "cpu", backend="torch")
        ort_model = EmbeddingModel.load(checkpoint, "cpu", backend="onnxruntime", threads=threads)
    forward = ort_model.forward
    assert isinstance(forward, OnnxForward)
    if spinning:  # ONNX Runtime's default, for the comparison under load
        onnxruntime = load_onnxruntime()
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        forward.session = onnxruntime.InferenceSession(
            forward.onnx.data, options, providers=["CPUExecutionProvider"]
        )
    rng = np.random.default_rng(0)
    prep = Preprocessing(input_size=size)
    inputs = torch.stack(
        [
            preprocess(radiograph_pixels(rng).astype(np.float32) / 65535, prep, 0.2)
            for _ in range(BATCH)
        ]
    )
    forwards = {"torch": torch_model.forward, "onnxruntime": forward}
    if int8:  # calibrated on the batch itself: this measures speed, not accuracy
        int8_data = quantize(forward.onnx.data, inputs.numpy())
        forwards["int8"] = OnnxForward(OnnxFile(Path("int8"), int8_data), threads)
    # The first run of each warms it up, and gives what the backends' agreement is measured on.
    outputs = {name: run(inputs) for name, run in forwards.items()}
    expected, got = outputs["torch"], outputs["onnxruntime"]
    times: dict[str, list[float]] = {name: [] for name in forwards}
    for _ in range(repeats):
        for name, run in forwards.items():
            started = time.perf_counter()
            run(inputs)
            times[name].append(time.perf_counter() - started)
    rate = {name: BATCH / statistics.median(seconds) for name, seconds in times.items()}
    gflop = gflop_per_image(torch_model.forward.network, size)
    matmul = matmul_gflop_per_second()
    cosine = np.sum(expected * got, axis=1) / (
        np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1)
    )
    return {
        "input_size": size,
        "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "ort_spinning": spinning,
        "torch_images_per_s": round(rate["torch"], 2),
        "onnxruntime_images_per_s": round(rate["onnxruntime"], 2),
        "ratio_ort_over_torch": round(rate["onnxruntime"] / rate["torch"], 3),
        **(
            {
                "int8_images_per_s": round(rate["int8"], 2),
                "ratio_int8_over_torch": round(rate["int8"] / rate["torch"], 3),
            }
            if int8
            else {}
        ),
        "min_cosine": float(cosine.min()),
        "max_similarity_difference": float(np.abs(expected @ expected.T - got @ got.T).max()),
        "gflop_per_image": round(gflop, 3),
        "matmul_gflop_per_s": round(matmul, 1),
        "share_of_matmul_rate": {name: round(r * gflop / matmul, 3) for name, r in rate.items()},
    }


def gflop_per_image(network, size: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network(torch.zeros(1, 1, size, size))
    return counter.get_total_flops() / 1e9


def matmul_gflop_per_second(side: int = 1024, repeats: int = 20) -> float:
    """The best rate of a float32 matrix product on torch's threads: a ceiling, so the best of
    many runs, as the engines' medians can only come in under it."""
    import torch

    a, b = torch.rand(side, side), torch.rand(side, side)
    a @ b  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - started)
    return 2 * side**3 / min(seconds) / 1e9


if __name__ == "__main__":
    main()
