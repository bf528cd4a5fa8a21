"""The int8 trial behind `radmatch quantize`: quantise a checkpoint's embedder with a calibration set
of its own training images, then measure what it costs in retrieval (CMC top-1 and mAP over every
follow-up of test people the model never saw, float32 and int8 through the same ONNX Runtime
path and the same evaluation protocol) and what it gains in speed. The record it writes beside
the checkpoint decides whether precision int8 may serve the model (model/int8.py)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.backends import OnnxForward
from model.inference import EmbeddingModel
from model.int8 import quantize, write_int8
from model.onnx_file import OnnxFile
from training.cohorts import read_cohort
from training.embedders import record_inputs
from training.protocol import evaluate_embeddings
from training.records import ImageRecord
from training.train import split_people

CALIBRATION_IMAGES = 256
SPEED_BATCH = 32
SPEED_REPEATS = 5


def training_images(model: EmbeddingModel, cohort: Path) -> list[ImageRecord]:
    """The images the checkpoint trained on: its cohort's people outside the test split and
    outside the validation people its run held out. ValueError for another cohort."""
    records, sha256 = read_cohort(cohort)
    info = model.checkpoint.info
    if info.get("manifest_sha256") not in (None, sha256):
        raise ValueError(
            f"{cohort} is not the cohort this checkpoint trained on (sha256 {sha256[:12]}, the "
            f"checkpoint names {info['manifest_sha256'][:12]}): calibrate on its own training images"
        )
    training = info.get("training", {})
    records = [r for r in records if r.split != "test"]
    trained, _ = split_people(records, training.get("val_fraction", 0.0), training.get("seed", 0))
    return trained


def calibration_sample(
    records: Sequence[ImageRecord], count: int, seed: int = 0
) -> list[ImageRecord]:
    """A seeded draw of `count` images (all of them when there are fewer)."""
    if len(records) <= count:
        return list(records)
    chosen = np.random.default_rng(seed).choice(len(records), size=count, replace=False)
    return [records[i] for i in sorted(chosen)]


def run_int8_trial(
    model: EmbeddingModel,
    calibration: Sequence[ImageRecord],
    test: Sequence[ImageRecord],
    sources: dict[str, Any],
) -> dict[str, Any]:
    """Quantise `model` (an fp32 ONNX Runtime model) on the calibration images, measure both on
    the test images, write `<checkpoint>.int8.onnx` and its record; return the record."""
    if not isinstance(model.forward, OnnxForward):
        raise ValueError("the int8 trial compares against the onnxruntime backend in fp32")
    prep = model.checkpoint.preprocessing
    calibration_inputs = record_inputs(calibration, prep).numpy()
    int8_data = quantize(model.forward.onnx.data, calibration_inputs)
    int8 = OnnxForward(OnnxFile(Path("int8"), int8_data), model.forward.threads)
    inputs = record_inputs(test, prep).numpy()
    fp32_embeddings, int8_embeddings = model.forward(inputs), int8(inputs)
    record = {
        "checkpoint_sha256": model.sha256,
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "calibration": {**sources["calibration"], "images": len(calibration), "method": "minmax"},
        "test": {
            **sources["test"],
            "people": len({r.person_id for r in test}),
            "images": len(test),
        },
        "fp32": _retrieval(test, fp32_embeddings),
        "int8": _retrieval(test, int8_embeddings),
        "cosine_to_fp32": _agreement(fp32_embeddings, int8_embeddings),
        "similarity_change": _similarity_change(fp32_embeddings, int8_embeddings),
        "speed": _speed(model.forward, int8, inputs[:SPEED_BATCH]),
    }
    return write_int8(model.path, int8_data, record)


def _retrieval(records: Sequence[ImageRecord], embeddings: np.ndarray) -> dict[str, float]:
    every = evaluate_embeddings(records, torch.from_numpy(embeddings))["intervals"]["all"]
    return {"cmc_top1": every["cmc"]["1"], "mAP": every["mAP"], "queries": every["queries"]}


def _agreement(fp32: np.ndarray, int8: np.ndarray) -> dict[str, float]:
    cosines = (fp32 * int8).sum(axis=1)
    return {"min": float(cosines.min()), "mean": float(cosines.mean())}


def _similarity_change(fp32: np.ndarray, int8: np.ndarray) -> dict[str, float]:
    """How far int8 moves the similarity of two test images from float32's, over every pair."""
    change = np.abs(fp32 @ fp32.T - int8 @ int8.T)
    return {"max": float(change.max()), "p99": float(np.quantile(change, 0.99))}


def _speed(fp32: OnnxForward, int8: OnnxForward, batch: np.ndarray) -> dict[str, Any]:
    """Images per second of each on one batch, alternating so both meet the same load; medians."""
    rates: dict[str, list[float]] = {"fp32": [], "int8": []}
    for forward in (fp32, int8):  # warm-up: first runs allocate
        forward(batch)
    for _ in range(SPEED_REPEATS):
        for name, forward in (("fp32", fp32), ("int8", int8)):
            start = time.perf_counter()
            forward(batch)
            rates[name].append(len(batch) / (time.perf_counter() - start))
    fp32_rate, int8_rate = (statistics.median(rates[n]) for n in ("fp32", "int8"))
    return {
        "batch": len(batch),
        "threads": fp32.threads,
        "fp32_images_per_second": fp32_rate,
        "int8_images_per_second": int8_rate,
        "ratio": int8_rate / fp32_rate,
    }
