"""What the service benchmarks share: a real `radmatch serve` on the embedded defaults (SQLite,
files under a scratch directory), the pixels of 512 x 512 16-bit radiographs (tests.support.images
writes them as PNG and DICOM), and the raw network timings the service is compared with."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from prometheus_client.parser import text_string_to_metric_families

from model.inference import EmbeddingModel
from tests.support.servers import Server, prepare_database, service_env

API = "/api/v1"
SIDE = 512


def new_database(scratch: Path, database_url: str | None = None) -> tuple[str, str]:
    """The database migrated (by default a SQLite file in `scratch`), and an admin key for it."""
    database_url = database_url or f"sqlite:///{scratch / 'radmatch.db'}"
    admin, _ = prepare_database(database_url)
    return database_url, admin


def start_server(
    scratch: Path,
    database_url: str,
    key: str,
    checkpoint: Path,
    launcher: tuple[str, ...] = Server.launcher,
    **settings: str,
) -> Server:
    """A running server on the database, with RADMATCH_<NAME> settings."""
    env = service_env(scratch / "data", database_url, checkpoint)
    env.update({f"RADMATCH_{name.upper()}": value for name, value in settings.items()})
    return Server(env=env, log=scratch / "server.log", admin_key=key, launcher=launcher).start()


def radiograph_pixels(rng: np.random.Generator) -> np.ndarray:
    """A smooth 16-bit knee-like picture with quantum noise, different every call."""
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    bones = np.exp(-((x - 0.5) ** 2) / 0.02) * (0.6 + 0.4 * np.cos(6 * y + rng.uniform(0, 6)))
    noise = rng.normal(0, 0.02, (SIDE, SIDE))
    return (np.clip(0.2 + 0.6 * bones + noise, 0, 1) * 65535).astype(np.uint16)


def baseline_models(
    checkpoint: Path, backend: str, threads: int
) -> tuple[EmbeddingModel, EmbeddingModel]:
    """The model as the server runs it (this backend and threads), and PyTorch eager beside it."""
    model = EmbeddingModel.load(checkpoint, "cpu", backend=backend, threads=threads)
    return model, EmbeddingModel.load(checkpoint, "cpu", backend="torch", threads=threads)


def forward_seconds(model: EmbeddingModel, batch: int, repeats: int) -> float:
    """Median seconds of one network run on `batch` preprocessed inputs, nothing else."""
    size = model.checkpoint.preprocessing.input_size
    inputs = torch.rand(batch, 1, size, size)
    model.embed_inputs(inputs)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.embed_inputs(inputs)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def histogram_means(metrics_text: str, name: str, label: str | None = None) -> dict:
    """Means of a Prometheus histogram in the server's /metrics text, in milliseconds for
    seconds, by one label's value (or under "all")."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            key = sample.labels.get(label, "all") if label else "all"
            if label and "operation" in sample.labels:
                key = f"{sample.labels['operation']}.{key}"
            if sample.name == f"{name}_sum":
                sums[key] = sample.value
            elif sample.name == f"{name}_count":
                counts[key] = sample.value
    scale = 1e3 if name.endswith("_seconds") else 1
    return {k: round(scale * sums[k] / counts[k], 2) for k in sums if counts.get(k)}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a running process has used, all its threads together."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def multipart_body(filename: str, data: bytes) -> tuple[bytes, str]:
    """A one-file multipart/form-data body under the field name "file", and its content type,
    built ahead so that a benchmark's clients only send."""
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
