"""The triplet and AdaTriplet losses of docs/method.md ("The losses"), written as literally as it
reads.

This is the oracle that tests/training/test_losses.py and bench/loss_step.py compare
training/losses.py against: plain Python loops over every triplet (a, p, n) and every unordered
negative pair {i, j}, each term a float64 torch scalar so that autograd still gives gradients.
It is slow by design (one Python iteration per triplet) and is never used for training.

Embeddings are taken as already L2-normalised, so phi (cosine similarity) is their dot product.
Which triplets and pairs are kept is decided on the plain float values; the gradient flows only
through the kept terms, as in any masked implementation.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

TRIPLET_KINDS = ("semihard", "hard", "all")


def _similarities(embeddings: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
    """phi[(i, j)] for every ordered pair i != j, one dot product per unordered pair."""
    e = embeddings.to(torch.float64)
    phi = {}
    for i in range(len(e)):
        for j in range(i + 1, len(e)):
            phi[i, j] = phi[j, i] = torch.dot(e[i], e[j])
    return phi


def _mean(terms: list[torch.Tensor], embeddings: torch.Tensor) -> torch.Tensor:
    """Mean of the terms; a zero that is still attached to the embeddings when there are none."""
    if not terms:
        return (embeddings.to(torch.float64) * 0.0).sum()
    return torch.stack(terms).mean()


def _mined(delta: float, margin: float, triplets: str) -> bool:
    if triplets == "semihard":
        return 0.0 < delta <= margin
    if triplets == "hard":
        return delta <= 0.0
    if triplets == "all":
        return True
    raise ValueError(f"unknown triplets {triplets!r}; expected one of {TRIPLET_KINDS}")


def all_triplets(labels: Iterable[int]) -> list[tuple[int, int, int]]:
    """Every (a, p, n) with label(a) == label(p), a != p, label(n) != label(a)."""
    y = [int(v) for v in labels]
    return [
        (a, p, n)
        for a in range(len(y))
        for p in range(len(y))
        if p != a and y[p] == y[a]
        for n in range(len(y))
        if y[n] != y[a]
    ]


def negative_pairs(labels: Iterable[int]) -> list[tuple[int, int]]:
    """Every unordered pair {i, j}, i < j, of different labels."""
    y = [int(v) for v in labels]
    return [(i, j) for i in range(len(y)) for j in range(i + 1, len(y)) if y[i] != y[j]]


def triplet_terms(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float, triplets: str
) -> list[torch.Tensor]:
    """The losses max(0, phi_an - phi_ap + eps) of the mined triplets, only those that are > 0."""
    phi = _similarities(embeddings)
    terms = []
    for a, p, n in all_triplets(labels.tolist()):
        delta = phi[a, p].item() - phi[a, n].item()
        if not _mined(delta, margin, triplets):
            continue
        loss = phi[a, n] - phi[a, p] + margin
        if loss.item() > 0:
            terms.append(loss)
    return terms


def pair_terms(embeddings: torch.Tensor, labels: torch.Tensor, beta: float) -> list[torch.Tensor]:
    """phi_ij - beta for the negative pairs with phi_ij >= beta."""
    phi = _similarities(embeddings)
    return [
        phi[i, j] - beta for i, j in negative_pairs(labels.tolist()) if phi[i, j].item() >= beta
    ]


def reference_triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float, triplets: str = "semihard"
) -> torch.Tensor:
    """L_TL: mean of the positive losses of the mined triplets, 0 when there are none."""
    return _mean(triplet_terms(embeddings, labels, margin, triplets), embeddings)


def reference_adatriplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float,
    beta: float,
    lambda_an: float = 1.0,
    triplets: str = "semihard",
) -> torch.Tensor:
    """L_TL + lambda * mean over negative pairs with phi >= beta of (phi - beta)."""
    triplet = reference_triplet_loss(embeddings, labels, margin, triplets)
    pairs = _mean(pair_terms(embeddings, labels, beta), embeddings)
    return triplet + lambda_an * pairs


def reference_automargin(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    k_delta: float = 2.0,
    k_an: float = 2.0,
    margin: float = 0.25,
    beta: float = 0.0,
) -> tuple[float, float]:
    """The next epoch's (margin, beta) from one epoch of (embeddings, labels) batches.

    eps = max(0, mean(Delta) / K_delta) over ALL triplets of all the batches, and
    beta = 1 - (1 - mean(phi over ALL negative pairs)) / K_an. `margin` and `beta` are the current
    values, kept when the epoch had no triplet (no negative pair, for beta).
    """
    deltas, negatives = [], []
    for embeddings, labels in batches:
        phi = _similarities(embeddings)
        deltas += [phi[a, p].item() - phi[a, n].item() for a, p, n in all_triplets(labels.tolist())]
        negatives += [phi[i, j].item() for i, j in negative_pairs(labels.tolist())]
    if deltas:
        margin = max(0.0, sum(deltas) / len(deltas) / k_delta)
    if negatives:
        beta = 1.0 - (1.0 - sum(negatives) / len(negatives)) / k_an
    return margin, beta
