"""How hard is the phantom cohort? Nearest-neighbour matching with embedders that learn nothing.

Generates (or reuses) a held-out phantom cohort, evaluates raw pixels and an untrained ResNet-18 by the
paper's protocol, prints one JSON object, and writes docs/results/phantom.md and its figure.

    .venv/bin/python -m bench.phantom_difficulty --subjects 200 --seed 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from model.decode import decode_image
from training.cohorts import read_knee_manifest
from training.embedders import baseline_embedder
from training.phantom.anatomy import VISIT_MONTHS
from training.phantom.cohort import CohortSpec, synthesize
from training.protocol import evaluate_by_interval, metrics_table

EMBEDDERS = ("raw-pixels", "untrained-resnet18")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--cohort", type=Path, default=None, help="default: data/phantom-<seed>")
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--docs", type=Path, default=Path("docs/results"))
    args = parser.parse_args()

    cohort = args.cohort or Path("data") / f"phantom-{args.seed}"
    manifest = cohort / "manifest.csv"
    started = time.perf_counter()
    if not manifest.exists():
        synthesize(CohortSpec(out=cohort, subjects=args.subjects, seed=args.seed, dicom=False))
    synth_seconds = time.perf_counter() - started
    records = read_knee_manifest(manifest)

    reports = {}
    for name in EMBEDDERS:
        reports[name] = evaluate_by_interval(records, baseline_embedder(name, args.input_size))
    result = {
        "bench": "phantom_difficulty",
        "subjects": len({r.person_id for r in records}),
        "images": len(records),
        "seed": args.seed,
        "input_size": args.input_size,
        "synth_seconds": round(synth_seconds, 1),
        "embedders": reports,
    }
    print(json.dumps(result))

    args.docs.mkdir(parents=True, exist_ok=True)
    figure = args.docs / "phantom_people.png"
    _figure(records, figure)
    _write_markdown(args, result, reports, figure)


def _figure(records, path: Path, tile: int = 200) -> None:
    """One person's right knee at every visit, above two other people at baseline and at 8 years."""
    people = sorted({r.person_id for r in records})
    by_key = {(r.person_id, r.side, int(r.visit_months)): r for r in records}
    right_visits = Counter(person for person, side, _ in by_key if side == "R")
    first = next(p for p in people if right_visits[p] == len(VISIT_MONTHS))
    others = [p for p in people if p != first and (p, "R", 96) in by_key][:2]
    rows = [[(first, m) for m in VISIT_MONTHS]]
    rows.append([(p, m) for p in others for m in (0, 96)])
    font = ImageFont.load_default(size=14)
    canvas = Image.new("L", (7 * tile, 2 * (tile + 22)), 255)
    draw = ImageDraw.Draw(canvas)
    for row_index, row in enumerate(rows):
        for col, (person, months) in enumerate(row):
            record = by_key[(person, "R", months)]
            pixels = decode_image(record.path.read_bytes()).pixels
            image = Image.fromarray((pixels * 255).astype("uint8")).resize((tile, tile))
            x, y = col * tile, row_index * (tile + 22)
            canvas.paste(image, (x, y + 22))
            draw.text((x + 4, y + 3), f"{person} R {months} mo, KL {record.kl_grade}", font=font)
    canvas.save(path)


def _write_markdown(args, result, reports, figure: Path) -> None:
    lines = [
        "# The phantom cohort: how hard it is",
        "",
        f"Measured {date.today().isoformat()} on {platform.machine()} "
        f"({result['subjects']} people, {result['images']} images, seed {result['seed']}, "
        f"inputs {result['input_size']} px). Produced by:",
        "",
        "```",
        f".venv/bin/python -m bench.phantom_difficulty --subjects {args.subjects} --seed {args.seed}",
        "```",
        "",
        "Gallery: every person's baseline images (both knees); queries: their follow-up images, "
        "grouped by months since baseline. Identity = person. Percentages.",
        "",
    ]
    raw = reports["raw-pixels"]["intervals"]
    top1 = {name: m["cmc"]["1"] for name, m in raw.items() if name != "all"}
    first, last = next(iter(top1)), list(top1)[-1]
    lines += [
        "## Calibration targets",
        "",
        f"- Raw-pixel CMC top-1 at {last} months: {100 * top1[last]:.1f}% (target: at most 30%).",
        f"- Raw-pixel CMC top-1 falls from {100 * top1[first]:.1f}% at {first} months to "
        f"{100 * top1[last]:.1f}% at {last} months; by interval: "
        + ", ".join(f"{k} mo {100 * v:.1f}%" for k, v in top1.items())
        + ".",
        f"- Chance level (one of {result['subjects']} people): {100 / result['subjects']:.1f}%.",
        "- How far training gets, on other phantom people, with each loss of the paper:",
        "  [phantom_benchmark.md](phantom_benchmark.md).",
        "",
    ]
    for name, report in reports.items():
        lines += [f"## {name}", "", metrics_table(report), ""]
    lines += [
        f"![one person across visits, and two other people]({figure.name})",
        "",
        "Top row: one person's right knee at every visit. Bottom row: two other people, each at "
        "baseline and at 96 months.",
        "",
    ]
    (args.docs / "phantom.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
