"""The paper's evaluation protocol: each person's first visit is the gallery, their later visits are
the queries, grouped by the time since that first visit, plus all follow-ups together.

Identity is the person: both knees of a person count as the same identity, so a knee query has two
relevant gallery images (docs/method.md, "The evaluation protocol").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from training.evaluate import retrieval_metrics
from training.records import ImageRecord
from training.verification import verification_metrics

KS = (1, 5, 10)
CURVE_RANKS = 20  # the CMC curve of the figure

# The rows of the paper's table: how each is read from an interval's entry of the report.
METRICS: dict[str, Callable[[dict[str, Any]], float]] = {
    "mAP": lambda m: m["mAP"],
    "mAP@R": lambda m: m["mAP@R"],
    **{f"CMC top-{k}": (lambda m, k=k: m["cmc"][str(k)]) for k in KS},
    "CMC top-1 (all shots)": lambda m: m["cmc_all_shots"]["1"],
}


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


def protocol_groups(
    records: Sequence[ImageRecord],
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Identity labels (one per person), gallery indices, and query indices by interval name
    ("12", ..., and "all" for every follow-up)."""
    gallery, queries = split_gallery_queries(records)
    if not queries:
        raise ValueError("the cohort has no follow-up images: nothing to match against baselines")
    people = {pid: i for i, pid in enumerate(sorted({r.person_id for r in records}))}
    labels = torch.tensor([people[r.person_id] for r in records])
    groups = {str(months): torch.tensor(idx) for months, idx in queries.items()}
    groups["all"] = torch.tensor([i for idx in queries.values() for i in idx])
    return labels, torch.tensor(gallery), groups


def evaluate_by_interval(
    records: Sequence[ImageRecord], embed: Callable[[Sequence[ImageRecord]], torch.Tensor]
) -> dict[str, Any]:
    """Embed every record once, then score each interval's queries against the baseline gallery
    (evaluate_embeddings)."""
    protocol_groups(records)  # a cohort without follow-ups is refused before the slow part
    return evaluate_embeddings(records, embed(records))


def evaluate_embeddings(records: Sequence[ImageRecord], embeddings: torch.Tensor) -> dict[str, Any]:
    """Score each interval's queries against the baseline gallery, one embedding per record.

    Returns {"gallery_images": n, "intervals": {"12": {...}, ..., "all": {...}}, "verification":
    {...}}: each interval has mAP, mAP@R, cmc and cmc_all_shots at KS (fractions, k as string
    keys, as in metrics.json), cmc_curve (standard CMC at ranks 1..CURVE_RANKS) and the number of
    queries; verification scores every (follow-up, baseline) image pair (verification_metrics).
    """
    labels, gallery, groups = protocol_groups(records)
    ranks = range(1, CURVE_RANKS + 1)
    intervals = {}
    for name, queries in groups.items():
        metrics = retrieval_metrics(
            embeddings[queries], labels[queries], embeddings[gallery], labels[gallery], ranks
        )
        intervals[name] = {
            "mAP": metrics["mAP"],
            "mAP@R": metrics["mAP@R"],
            "cmc": {str(k): metrics["cmc"][k] for k in KS},
            "cmc_all_shots": {str(k): metrics["cmc_all_shots"][k] for k in KS},
            "cmc_curve": [metrics["cmc"][k] for k in ranks],
            "queries": len(queries),
        }
    follow_ups = groups["all"]
    verification = verification_metrics(
        embeddings[follow_ups], labels[follow_ups], embeddings[gallery], labels[gallery]
    )
    return {"gallery_images": len(gallery), "intervals": intervals, "verification": verification}


def interval_label(name: str) -> str:
    """ "12" (months) -> "1 y", "all" -> "all"."""
    return "all" if name == "all" else f"{int(name) // 12} y"


def metrics_table(report: dict[str, Any]) -> str:
    """The paper's table layout: one row per metric, one column per interval, percentages."""
    intervals = report["intervals"]
    names = list(intervals)
    header = ["metric"] + [interval_label(n) for n in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, value in METRICS.items():
        cells = [f"{100 * value(intervals[n]):.1f}" for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| queries | " + " | ".join(str(intervals[n]["queries"]) for n in names) + " |")
    return "\n".join(lines)
