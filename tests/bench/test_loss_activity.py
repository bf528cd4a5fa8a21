"""The loss-activity benchmark counts what the loss keeps: per batch, the triplets with
0 < Delta < margin and the negative pairs at or above beta, as a direct count over the batch."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from bench.loss_activity import activity


def test_activity_counts_the_kept_triplets_and_pairs_of_each_batch():
    generator = torch.Generator().manual_seed(0)
    embeddings = F.normalize(torch.randn(12, 8, generator=generator), dim=1)
    labels = torch.arange(4).repeat_interleave(3)
    batches = [torch.arange(12), torch.arange(6)]
    margin, beta = 0.3, 0.1
    similarity = embeddings @ embeddings.T
    triplets, pairs = [], []
    for batch in batches:
        indices = batch.tolist()
        triplets.append(
            sum(
                0 < similarity[a, p] - similarity[a, n] < margin
                for a, p, n in itertools.product(indices, repeat=3)
                if a != p and labels[a] == labels[p] and labels[n] != labels[a]
            )
        )
        pairs.append(
            sum(
                similarity[i, j] >= beta
                for i, j in itertools.combinations(indices, 2)
                if labels[i] != labels[j]
            )
        )
    measured = activity(embeddings, labels, batches, margin=margin, beta=beta)
    assert measured["mined_triplets_per_batch"] == pytest.approx(sum(triplets) / 2)
    assert measured["kept_negative_pairs_per_batch"] == pytest.approx(sum(pairs) / 2)
    assert min(triplets) > 0 and min(pairs) > 0  # the counts are not trivially zero
