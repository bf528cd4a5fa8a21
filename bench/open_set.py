"""Does the open-set answer tell a gallery person's query from a stranger's? Put the first visits
of a share of a cohort's people into a running `radmatch serve` (dated, over HTTP), search every
follow-up image of every person (dated too), and count each open-set decision for the people in
the gallery and for those who are not, overall and by years since the first visit. Prints one
JSON object.

    .venv/bin/python -m bench.open_set --checkpoint runs/cpu/checkpoint.pt \\
        --manifest data/phantom-test/manifest.csv --work runs/open-set
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import httpx

from bench.service_agreement import wait_until_ready
from tests.support.servers import free_port
from training.cohorts import read_knee_manifest
from training.protocol import interval_label, interval_months
from training.records import ImageRecord

DECISIONS = ("candidate supported", "inconclusive", "probably not in the gallery")
FIRST_VISIT = date(2016, 3, 1)


def visit_date(record: ImageRecord) -> str:
    return (FIRST_VISIT + timedelta(days=round(record.visit_months * 30.4375))).isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--in-gallery", type=float, default=0.5, help="share of people")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("runs/open-set"))
    args = parser.parse_args()

    records = read_knee_manifest(args.manifest)
    people = sorted({r.person_id for r in records})
    gallery = set(random.Random(args.seed).sample(people, round(args.in_gallery * len(people))))
    shutil.rmtree(args.work, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADMATCH_")}
    env.update(RADMATCH_DATA_DIR=str(args.work / "data"), RADMATCH_CHECKPOINT=str(args.checkpoint))
    radmatch = [sys.executable, "-m", "cli"]
    subprocess.run([*radmatch, "db", "upgrade"], env=env, check=True, capture_output=True)
    key = subprocess.run(
        [*radmatch, "keys", "create", "--role", "examiner", "--name", "open-set"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.splitlines()[-1]  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [*radmatch, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=120
        )
        wait_until_ready(client)
        upload_gallery(client, [r for r in records if r.person_id in gallery])
        outcomes = search_follow_ups(client, records, gallery, args.k)
    finally:
        server.terminate()
        server.wait()
    result = {
        "date": date.today().isoformat(),
        "checkpoint": str(args.checkpoint),
        "manifest": str(args.manifest),
        "people": len(people),
        "gallery_people": len(gallery),
        "k": args.k,
        "p_in_gallery_auc": separation(outcomes),
        **summarise(outcomes),
    }
    print(json.dumps(result, indent=2))


def upload_gallery(client: httpx.Client, records: list[ImageRecord]) -> None:
    ids: dict[str, int] = {}
    for record in records:
        if record.visit_months != 0:
            continue
        if record.person_id not in ids:
            response = client.post("/api/v1/people", json={"external_ref": record.person_id})
            response.raise_for_status()
            ids[record.person_id] = response.json()["id"]
        client.post(
            f"/api/v1/people/{ids[record.person_id]}/images",
            files={"file": (record.path.name, record.path.read_bytes())},
            data={
                "side": record.side,
                "pixel_spacing_mm": record.pixel_spacing_mm,
                "acquisition_date": visit_date(record),
            },
        ).raise_for_status()


def search_follow_ups(
    client: httpx.Client, records: list[ImageRecord], gallery: set[str], k: int
) -> list[dict]:
    """One outcome per follow-up image: in the gallery or not, the interval, the decision, and
    the true person's rank and log10 LR where they were returned."""
    outcomes = []
    for record in records:
        if record.visit_months == 0:
            continue
        response = client.post(
            "/api/v1/search",
            files={"file": (record.path.name, record.path.read_bytes())},
            data={
                "k": k,
                "pixel_spacing_mm": record.pixel_spacing_mm,
                "query_date": visit_date(record),
            },
        )
        response.raise_for_status()
        answer = response.json()
        own = [c for c in answer["candidates"] if c["external_ref"] == record.person_id]
        outcomes.append(
            {
                "in_gallery": record.person_id in gallery,
                "interval": str(interval_months(record.visit_months)),
                "decision": answer["open_set"]["decision"],
                "p_in_gallery": answer["open_set"]["p_in_gallery"],
                "top_log10_lr": answer["candidates"][0]["evidence"]["log10_lr"],
                "own_rank": own[0]["rank"] if own else None,
                "own_log10_lr": own[0]["evidence"]["log10_lr"] if own else None,
            }
        )
    return outcomes


def separation(outcomes: list[dict]) -> float:
    """The probability that a gallery person's query gets a higher p_in_gallery than a
    stranger's (ties count half): 0.5 tells them apart no better than chance."""
    inside = [o["p_in_gallery"] for o in outcomes if o["in_gallery"]]
    outside = [o["p_in_gallery"] for o in outcomes if not o["in_gallery"]]
    wins = sum((a > b) + 0.5 * (a == b) for a in inside for b in outside)
    return round(wins / (len(inside) * len(outside)), 4)


def summarise(outcomes: list[dict]) -> dict:
    groups: dict[str, dict[str, list[dict]]] = {"in gallery": {}, "not in gallery": {}}
    for outcome in outcomes:
        group = groups["in gallery" if outcome["in_gallery"] else "not in gallery"]
        group.setdefault("all", []).append(outcome)
        group.setdefault(interval_label(outcome["interval"]), []).append(outcome)
    return {
        name: {interval: _shares(items) for interval, items in sorted(group.items())}
        for name, group in groups.items()
    }


def _shares(items: list[dict]) -> dict:
    counts = Counter(item["decision"] for item in items)
    ranked = [item for item in items if item["own_rank"] is not None]
    return {
        "queries": len(items),
        "decisions": {d: round(counts[d] / len(items), 4) for d in DECISIONS},
        "mean_p_in_gallery": round(sum(i["p_in_gallery"] for i in items) / len(items), 4),
        "p_in_gallery_below_prior": round(
            sum(i["p_in_gallery"] < 0.5 for i in items) / len(items), 4
        ),
        "top1": round(sum(i["own_rank"] == 1 for i in ranked) / len(items), 4),
        "own_log10_lr_median": _median([i["own_log10_lr"] for i in ranked]),
    }


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[len(ordered) // 2], 3)


if __name__ == "__main__":
    main()
