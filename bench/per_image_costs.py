"""The fixed costs an upload pays around the network, each measured alone on one core's worth of
work: the multipart parse of the request body, the sha256 of the original, decoding, the
preprocessing (crop and antialiased resize), and the original's atomic write with its two fsyncs
(the file, then its directory); beside one image's share of a batched forward of the backend in
use. Radiographs are 16-bit PNG and DICOM files of 512 and 2048 pixels a side, made before any
clock starts. Prints one JSON object.

    .venv/bin/python -m bench.per_image_costs                    # the paper's 256 px model
    .venv/bin/python -m bench.per_image_costs --input-size 128   # the cpu preset's model
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartParser

from bench.service_bench import forward_seconds
from model.decode import decode_image
from model.files import write_atomically
from model.inference import EmbeddingModel
from model.preprocess import preprocess
from tests.support.images import phantom_dicom, png_bytes
from tests.support.servers import seeded_checkpoint

BOUNDARY = "radmatch-bench-boundary"
SIDES = (512, 2048)
BATCH = 8


def radiograph(side: int, seed: int) -> np.ndarray:
    """A smooth 16-bit knee-like picture with quantum noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    bones = np.exp(-((x - 0.5) ** 2) / 0.02) * (0.6 + 0.4 * np.cos(6 * y + rng.uniform(0, 6)))
    noise = rng.normal(0, 0.02, (side, side))
    return (np.clip(0.2 + 0.6 * bones + noise, 0, 1) * 65535).astype(np.uint16)


def multipart_body(data: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="knee"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


# One event loop for every parse, as in the server: creating one costs more than a small parse.
LOOP = asyncio.new_event_loop()


def parse_multipart(body: bytes) -> bytes:
    """The file's bytes, as the service's form parser (Starlette's) reads them."""

    async def parse() -> bytes:
        async def stream():
            for start in range(0, len(body), 65536):  # as the server receives it, in chunks
                yield body[start : start + 65536]

        headers = Headers({"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
        form = await MultiPartParser(headers, stream()).parse()
        data = await form["file"].read()
        await form.close()
        return data

    return LOOP.run_until_complete(parse())


def median_ms(work: Callable[[], object], repeats: int) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def costs(data: bytes, model: EmbeddingModel, scratch: Path, repeats: int) -> dict[str, float]:
    body = multipart_body(data)
    assert parse_multipart(body) == data
    decoded = decode_image(data)
    prep = model.checkpoint.preprocessing
    spacing = decoded.metadata.pixel_spacing_mm[1] if decoded.metadata.pixel_spacing_mm else None
    names = iter(range(10**9))
    return {
        "file_bytes": len(data),
        "multipart_parse_ms": median_ms(lambda: parse_multipart(body), repeats),
        "sha256_ms": median_ms(lambda: hashlib.sha256(data).hexdigest(), repeats),
        "decode_ms": median_ms(lambda: decode_image(data), repeats),
        "preprocess_ms": median_ms(lambda: preprocess(decoded.pixels, prep, spacing), repeats),
        "atomic_write_two_fsyncs_ms": median_ms(
            lambda: write_atomically(scratch / f"original-{next(names)}", data), repeats
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        checkpoint = seeded_checkpoint(scratch / "checkpoint.pt", args.input_size)
        model = EmbeddingModel.load(checkpoint, "cpu", backend=args.backend)
        forward_ms = forward_seconds(model, BATCH, args.repeats) * 1000 / BATCH
        files = {}
        for side in SIDES:
            pixels = radiograph(side, seed=side)
            files[f"png_{side}"] = png_bytes(pixels)
            files[f"dicom_{side}"] = phantom_dicom(pixels, f"costs-{side}", pixel_spacing_mm=0.2)
        measured = {name: costs(data, model, scratch, args.repeats) for name, data in files.items()}
    for figures in measured.values():
        fixed = sum(value for key, value in figures.items() if key.endswith("_ms"))
        figures["fixed_total_ms"] = fixed
        figures["fixed_over_forward"] = fixed / forward_ms
    print(
        json.dumps(
            {
                "input_size": args.input_size,
                "backend": args.backend,
                "forward_ms_per_image": forward_ms,
                "forward_batch": BATCH,
                "files": measured,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
