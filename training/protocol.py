"""The paper's evaluation protocol: each person's first visit is the gallery, their later visits are
the queries, grouped by the time since that first visit, plus all follow-ups together.

Identity is the person: both knees of a person count as the same identity, so a knee query has two
relevant gallery images (PAPER.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from training.evaluate import retrieval_metrics
from training.records import ImageRecord

KS = (1, 5, 10)


def interval_months(months: float) -> int:
    """Follow-ups are grouped by whole years since baseline, as visit schedules are."""
    return int(round(months / 12.0)) * 12


def split_gallery_queries(records: Sequence[ImageRecord]) -> tuple[list[int], dict[int, list[int]]]:
    """Indices of gallery records, and of query records by interval (months since baseline)."""
    first_visit: dict[str, float] = {}
    for record in records:
        first_visit[record.person_id] = min(
            record.visit_months, first_visit.get(record.person_id, record.visit_months)
        )
    gallery, queries = [], {}
    for index, record in enumerate(records):
        since = record.visit_months - first_visit[record.person_id]
        if since == 0:
            gallery.append(index)
        else:
            queries.setdefault(interval_months(since), []).append(index)
    return gallery, dict(sorted(queries.items()))


def evaluate_by_interval(
    records: Sequence[ImageRecord], embed: Callable[[Sequence[ImageRecord]], torch.Tensor]
) -> dict[str, Any]:
    """Embed every record once, then score each interval's queries against the baseline gallery.

    Returns {"intervals": {"12": {...}, ..., "all": {...}}} where each entry has mAP, mAP@R, cmc and
    cmc_all_shots (fractions, k as string keys, as in metrics.json) and the number of queries.
    """
    gallery, queries = split_gallery_queries(records)
    if not queries:
        raise ValueError("the cohort has no follow-up images: nothing to match against baselines")
    embeddings = embed(records)
    people = {pid: i for i, pid in enumerate(sorted({r.person_id for r in records}))}
    labels = torch.tensor([people[r.person_id] for r in records])
    groups = {str(months): idx for months, idx in queries.items()}
    groups["all"] = [i for idx in queries.values() for i in idx]
    g = torch.tensor(gallery)
    intervals = {}
    for name, idx in groups.items():
        q = torch.tensor(idx)
        metrics = retrieval_metrics(embeddings[q], labels[q], embeddings[g], labels[g], ks=KS)
        intervals[name] = {
            "mAP": metrics["mAP"],
            "mAP@R": metrics["mAP@R"],
            "cmc": {str(k): v for k, v in metrics["cmc"].items()},
            "cmc_all_shots": {str(k): v for k, v in metrics["cmc_all_shots"].items()},
            "queries": len(idx),
        }
    return {"gallery_images": len(gallery), "intervals": intervals}


def metrics_table(report: dict[str, Any]) -> str:
    """The paper's table layout: one row per metric, one column per interval, percentages."""
    intervals = report["intervals"]
    names = list(intervals)
    header = ["metric"] + [f"{int(n) // 12} y" if n != "all" else "all" for n in names]
    rows = [
        ("mAP", lambda m: m["mAP"]),
        ("mAP@R", lambda m: m["mAP@R"]),
        *[(f"CMC top-{k}", lambda m, k=k: m["cmc"][str(k)]) for k in KS],
        ("CMC top-1 (all shots)", lambda m: m["cmc_all_shots"]["1"]),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, value in rows:
        cells = [f"{100 * value(intervals[n]):.1f}" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| queries | " + " | ".join(str(intervals[n]["queries"]) for n in names) + " |")
    return "\n".join(lines)
