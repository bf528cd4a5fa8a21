"""The paper's protocol: baseline gallery, follow-up queries grouped by interval, and the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.protocol import evaluate_by_interval, metrics_table, split_gallery_queries
from training.records import ImageRecord


def _records(visits: dict[str, list[float]]) -> list[ImageRecord]:
    return [
        ImageRecord(
            person_id=p,
            visit_months=m,
            path=Path(f"/{p}/{side}{m}.png"),
            body_part="KNEE",
            side=side,
        )
        for p, months in visits.items()
        for m in months
        for side in ("L", "R")
    ]


def test_gallery_is_each_persons_first_visit_and_queries_group_by_years():
    records = _records({"a": [0, 12, 24], "b": [12, 36, 100], "c": [-12.0, 0.0]})
    gallery, queries = split_gallery_queries(records)
    assert {(records[i].person_id, records[i].visit_months) for i in gallery} == {
        ("a", 0),
        ("b", 12),
        ("c", -12.0),
    }
    # b's 36-month visit is 2 years after b's first; 100 months is 88 after, grouped with 7 years.
    assert {k: len(v) for k, v in queries.items()} == {12: 4, 24: 4, 84: 2}


def _identity_embedder(noise: float):
    def embed(records):
        people = sorted({r.person_id for r in records})
        onehot = torch.eye(len(people))[[people.index(r.person_id) for r in records]]
        generator = torch.Generator().manual_seed(0)
        noisy = onehot + noise * torch.randn(onehot.shape, generator=generator)
        return torch.nn.functional.normalize(noisy, dim=1)

    return embed


def test_a_perfect_embedder_scores_one_everywhere_and_noise_scores_less():
    records = _records({f"p{i}": [0, 12, 24] for i in range(30)})
    perfect = evaluate_by_interval(records, _identity_embedder(0.0))
    assert set(perfect["intervals"]) == {"12", "24", "all"}
    for metrics in perfect["intervals"].values():
        assert metrics["mAP"] == metrics["mAP@R"] == metrics["cmc"]["1"] == 1.0
    assert perfect["intervals"]["all"]["queries"] == 120
    assert perfect["gallery_images"] == 60
    noisy = evaluate_by_interval(records, _identity_embedder(1.0))
    assert noisy["intervals"]["all"]["mAP"] < 0.9
    table = metrics_table(noisy)
    assert table.splitlines()[0] == "| metric | 1 y | 2 y | all |"
    assert "| CMC top-1 |" in table


def test_a_cohort_without_follow_ups_is_refused():
    with pytest.raises(ValueError, match="no follow-up"):
        evaluate_by_interval(_records({"a": [0], "b": [0]}), _identity_embedder(0.0))
