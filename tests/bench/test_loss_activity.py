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


def test_the_pair_term_pulls_with_the_gradient_of_the_mean_over_kept_pairs():
    generator = torch.Generator().manual_seed(1)
    embeddings = F.normalize(torch.randn(8, 4, generator=generator), dim=1)
    labels = torch.arange(4).repeat_interleave(2)
    beta = 0.2
    kept = [
        (i, j)
        for i, j in itertools.combinations(range(8), 2)
        if labels[i] != labels[j] and embeddings[i] @ embeddings[j] >= beta
    ]
    # d/dx_i of mean over kept (x_i . x_j - beta) is the sum of the partners over the count.
    gradient = torch.zeros_like(embeddings)
    for i, j in kept:
        gradient[i] += embeddings[j] / len(kept)
        gradient[j] += embeddings[i] / len(kept)
    measured = activity(embeddings, labels, [torch.arange(8)], margin=0.3, beta=beta)
    assert len(kept) > 1
    assert measured["pair_term_gradient_norm"] == pytest.approx(float(gradient.norm()), rel=1e-5)
    assert measured["triplet_term_gradient_norm"] > 0
