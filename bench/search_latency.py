"""Search latency: one query radiograph against a large gallery through the HTTP API (decode,
preprocess, embed, search, group by person, store the search and its query), against the raw
single-image network forward measured in the same run. Prints one JSON object.

The gallery's embeddings are written straight into the database (people with four images each,
clustered unit vectors) because embedding 100,000 radiographs would take hours on a CPU; the
server then builds its index from them as it does on start-up. Queries are 512 x 512 16-bit PNGs.

    .venv/bin/python -m bench.search_latency                          # 100,000 images, exact
    .venv/bin/python -m bench.search_latency --approximate-from 0     # the approximate index
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from app.storage.database import make_engine
from app.storage.tables import Embedding, Image, ModelVersion, Person
from bench.service_bench import (
    API,
    baseline_models,
    forward_seconds,
    histogram_means,
    new_database,
    percentile,
    radiograph_pixels,
    start_server,
)
from model.threads import available_cpus
from tests.support.images import png_bytes
from tests.support.servers import seeded_checkpoint

TARGET_RATIO = 1.3
IMAGES_PER_PERSON = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--approximate-from", type=int, default=None, help="RADMATCH_ setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--flip-tta", action="store_true", help="a model that embeds each image and its mirror"
    )
    parser.add_argument(
        "--backend", default="auto", help="RADMATCH_INFERENCE_BACKEND, server and baseline alike"
    )
    parser.add_argument(
        "--threads", type=int, default=available_cpus(), help="RADMATCH_THREADS, both alike"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    settings = {"inference_backend": args.backend, "threads": str(args.threads)}
    if args.approximate_from is not None:
        settings["approximate_index_from"] = str(args.approximate_from)
    result: dict = {
        "bench": "search_latency",
        "cpu_cores": os.cpu_count(),
        "threads": args.threads,
        "backend": args.backend,
        "input_size": args.input_size,
        "flip_tta": args.flip_tta,
        "gallery_images": args.gallery,
        "k": args.k,
        "target_ratio": TARGET_RATIO,
    }
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        checkpoint = seeded_checkpoint(scratch / "model.pt", args.input_size, args.flip_tta)
        model, reference = baseline_models(checkpoint, args.backend, args.threads)
        queries = [png_bytes(radiograph_pixels(rng)) for _ in range(args.queries + 5)]
        database_url, key = new_database(scratch)
        start_server(scratch, database_url, key, checkpoint).stop()  # registers the model
        started = time.perf_counter()
        write_gallery(database_url, args.gallery, model.dimension, rng)
        result["gallery_write_seconds"] = round(time.perf_counter() - started, 1)

        forward = [forward_seconds(model, 1, repeats=20)]
        torch_forward = forward_seconds(reference, 1, repeats=20)
        started = time.perf_counter()
        server = start_server(scratch, database_url, key, checkpoint, **settings)
        result["server_start_seconds"] = round(time.perf_counter() - started, 1)
        latencies = []
        try:
            with server.admin() as client:
                for number, data in enumerate(queries):
                    began = time.perf_counter()
                    response = client.post(
                        f"{API}/search", files={"file": ("query.png", data)}, data={"k": args.k}
                    )
                    elapsed = time.perf_counter() - began
                    if response.status_code != 200:
                        raise SystemExit(f"search failed: {response.status_code} {response.text}")
                    if number >= 5:  # the first few warm up
                        latencies.append(elapsed)
                answer = response.json()
                metrics = client.get("/metrics").text
        finally:
            server.stop()
        forward.append(forward_seconds(model, 1, repeats=20))
    single = sum(forward) / len(forward)
    p50 = percentile(latencies, 50)
    result.update(
        {
            "index": answer["index"],
            "index_size": answer["index_size"],
            "single_forward_ms": round(single * 1e3, 1),
            "single_forward_ms_before_and_after": [round(f * 1e3, 1) for f in forward],
            "backend_in_use": model.backend,
            "torch_eager_single_forward_ms": round(torch_forward * 1e3, 1),
            "search_ms_p50": round(p50 * 1e3, 1),
            "search_ms_p95": round(percentile(latencies, 95) * 1e3, 1),
            "ratio_p50_to_forward": round(p50 / single, 3),
            "met": p50 / single <= TARGET_RATIO,
            "server_mean_stage_ms": histogram_means(metrics, "radmatch_stage_seconds", "stage"),
        }
    )
    print(json.dumps(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def write_gallery(database_url: str, size: int, dimension: int, rng: np.random.Generator) -> None:
    """`size` images of size/4 people, with embeddings of the active model at a new generation."""
    people = size // IMAGES_PER_PERSON
    centres = rng.standard_normal((people, dimension), dtype=np.float32)
    engine = make_engine(database_url)
    with engine.begin() as connection:
        version_id = connection.scalar(sa.select(ModelVersion.id))
        generation = connection.scalar(
            sa.update(ModelVersion)
            .where(ModelVersion.id == version_id)
            .values(index_generation=ModelVersion.index_generation + 1)
            .returning(ModelVersion.index_generation)
        )
        connection.execute(
            sa.insert(Person), [{"id": p + 1, "external_ref": f"G-{p}"} for p in range(people)]
        )
        image_ids = np.arange(1, people * IMAGES_PER_PERSON + 1)
        owners = (image_ids - 1) // IMAGES_PER_PERSON
        vectors = centres[owners] + 0.6 * rng.standard_normal(
            (len(image_ids), dimension), dtype=np.float32
        )
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        connection.execute(
            sa.insert(Image),
            [
                {
                    "id": int(i),
                    "person_id": int(owner) + 1,
                    "sha256": f"{i:064x}",
                    "size_bytes": 0,
                    "format": "png",
                    "image_metadata": {},
                }
                for i, owner in zip(image_ids, owners, strict=True)
            ],
        )
        connection.execute(
            sa.insert(Embedding),
            [
                {
                    "image_id": int(i),
                    "model_version_id": version_id,
                    "vector": vector.tobytes(),
                    "added_generation": generation,
                }
                for i, vector in zip(image_ids, vectors, strict=True)
            ],
        )
    engine.dispose()


if __name__ == "__main__":
    main()
