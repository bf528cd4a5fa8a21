"""The protocol's pairs that `radmatch evaluate` assesses with a checkpoint's calibration: every
follow-up against every baseline image, from one similarity matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.calibrated_evaluation import protocol_pairs
from training.protocol import interval_months
from training.records import ImageRecord


def _records() -> list[ImageRecord]:
    """Four people: baselines at 0 months, follow-ups at 12 and 36 (person d has none)."""
    visits = {"a": [0, 12, 36], "b": [0, 12], "c": [0, 36], "d": [0]}
    return [
        ImageRecord(person, months, Path(f"/{person}/{months}.png"), "KNEE", side)
        for person, schedule in visits.items()
        for months in schedule
        for side in ("L", "R")
    ]


def test_protocol_pairs_are_every_follow_up_against_every_baseline():
    records = _records()
    embeddings = F.normalize(
        torch.randn(len(records), 8, generator=torch.Generator().manual_seed(0))
    )
    pairs = protocol_pairs(records, embeddings)
    baselines = [i for i, r in enumerate(records) if r.visit_months == 0]
    follow_ups = [i for i, r in enumerate(records) if r.visit_months > 0]
    expected = sorted(
        (
            float(embeddings[q] @ embeddings[g]),
            records[q].person_id == records[g].person_id,
            abs(records[q].visit_months - records[g].visit_months) / 12,
            interval_months(records[q].visit_months),
        )
        for q in follow_ups
        for g in baselines
    )
    found = sorted(zip(pairs.similarity, pairs.same, pairs.years, pairs.interval, strict=True))
    assert len(found) == len(expected) == 8 * 8
    for got, want in zip(found, expected, strict=True):
        assert np.isclose(got[0], want[0], atol=1e-6) and got[1:] == want[1:]
    assert pairs.different_in_protocol == 64 - int(pairs.same.sum())


def test_different_people_pairs_are_sampled_and_same_person_pairs_all_kept():
    records = _records()
    embeddings = F.normalize(
        torch.randn(len(records), 8, generator=torch.Generator().manual_seed(1))
    )
    whole = protocol_pairs(records, embeddings)
    sampled = protocol_pairs(records, embeddings, max_different=10, seed=3)
    assert sampled.same.sum() == whole.same.sum() == 16  # 2 knees x 2 baselines per follow-up
    assert (~sampled.same).sum() == 10 and sampled.different_in_protocol == 48
    assert set(sampled.similarity[~sampled.same]) <= set(whole.similarity[~whole.same])
    again = protocol_pairs(records, embeddings, max_different=10, seed=3)
    assert np.array_equal(again.similarity, sampled.similarity)  # seeded
