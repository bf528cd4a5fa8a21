"""How fast `radmatch synth` makes a cohort (target: 20 people in under a minute on 2 cores).

Prints one JSON object: the wall time of a full synth (PNG and DICOM twins, all cores), and beside it
a floor measured in the same run: re-encoding the same images as PNG, one process. The ratio says how
much the rendering and DICOM encoding cost over just writing the pixels.

    .venv/bin/python -m bench.synth_speed --subjects 20
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

from training.cohorts import read_knee_manifest
from training.phantom.cohort import CohortSpec, synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "cohort"
        started = time.perf_counter()
        manifest = synthesize(
            CohortSpec(out=out, subjects=args.subjects, seed=args.seed), progress=False
        )
        synth_seconds = time.perf_counter() - started
        records = read_knee_manifest(manifest)
        images = [Image.open(r.path) for r in records]
        for image in images:
            image.load()
        started = time.perf_counter()
        for index, image in enumerate(images):
            image.save(Path(folder) / f"floor-{index}.png")
        floor_seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "bench": "synth_speed",
                "subjects": args.subjects,
                "images": len(records),
                "cores": os.cpu_count(),
                "synth_seconds": round(synth_seconds, 2),
                "target_seconds": 60,
                "png_floor_seconds": round(floor_seconds, 2),
                "ratio_to_floor": round(synth_seconds / floor_seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
