"""Verification metrics: is this query the same person as this gallery image, yes or no?

Every (query, gallery image) pair is one trial: genuine when the labels are equal, impostor
otherwise. Its score is the cosine similarity: the embeddings are L2-normalised in float32 (an
all-zero embedding stays zero and scores 0 against everything) and their dot product is summed in
float64 and rounded to float32, so a score hardly depends on how the product was computed. A pair is accepted at
threshold t when its score >= t, so tied scores are all accepted or all rejected together:

- FPR(t) = share of impostor pairs with score >= t, TPR(t) = share of genuine pairs with score >= t,
  FNR(t) = 1 - TPR(t).
- TPR at FPR f = max TPR(t) over all thresholds t with FPR(t) <= f: the bound holds exactly, ties
  included, f being read as the decimal it prints as ("0.001" allows floor(N_impostor / 1000)
  impostors). The maximum is reached at a genuine score; threshold_at_fpr is the highest threshold
  that reaches it (the one with the fewest false accepts), None when no genuine score qualifies (TPR
  0: only thresholds above every genuine score keep the false accepts within the bound).
- EER = where the empirical ROC crosses FPR = FNR. The ROC is the points (FPR(t), TPR(t)) at every
  distinct score t, joined by straight lines as scikit-learn's roc_curve draws them (a genuine and
  an impostor score tied at t give a diagonal step), and its crossing with the line TPR = 1 - FPR is
  unique; EER is that point's FPR (= its FNR). eer_threshold = the highest genuine score g with
  FNR(g) <= EER: accepting scores >= g misses at most the EER share of genuine pairs and, unless an
  impostor ties with g exactly, falsely accepts at most the EER share of impostors.

Both need only the counts of impostor scores >= and > each distinct genuine score: between two
consecutive genuine scores the ROC is flat. So the Q x G similarities are computed twice, a chunk of
queries at a time: the first pass keeps the genuine scores (about 2 per query in the forensic setup)
and fills the histograms; the second counts the impostors against the sorted genuine scores with one
binary search each. Memory stays bounded by the chunk plus the genuine scores (4 bytes each), and
both passes make the same matrix products, so each pair has one score. Given the scores, the counts
are exact and EER is computed as a fraction, rounded once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F

from training.evaluate import as_labels

# Similarity entries per chunk of queries, as in training/evaluate.py: tens of MB of temporaries.
_CHUNK_ELEMENTS = 1 << 21


def verification_metrics(
    query_emb: Any,
    query_labels: Any,
    gallery_emb: Any,
    gallery_labels: Any,
    fprs: Sequence[float] = (1e-2, 1e-3),
    bins: int = 80,
) -> dict[str, Any]:
    """Score every (query, gallery image) pair and summarise genuine against impostor scores.

    Embeddings are (N, D) and (M, D) torch tensors or numpy arrays (normalised here); labels are
    identities (int64-convertible). Returns plain ints, floats and lists (json.dumps-ready):
    genuine_pairs, impostor_pairs, tpr_at_fpr and threshold_at_fpr ({repr(f): value}), eer,
    eer_threshold (definitions in the module docstring), and genuine_histogram / impostor_histogram
    ({"edges": bins + 1 values over [-1, 1], "counts": bins ints}: equal-width bins, [edges[i],
    edges[i + 1]) and the last one closed, binned by torch.histc, so a score within float rounding
    of an inner edge may land on either side; scores that float32 rounding puts just outside
    [-1, 1] count in the end bins).

    Raises ValueError when there is no genuine or no impostor pair: the rates are undefined.
    """
    queries = _normalised(query_emb, "query_emb")
    gallery = _normalised(gallery_emb, "gallery_emb").to(queries.device)
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"embeddings must share D, got {tuple(queries.shape)} and {tuple(gallery.shape)}"
        )
    q_labels = as_labels(query_labels, len(queries), "query_labels", queries.device)
    g_labels = as_labels(gallery_labels, len(gallery), "gallery_labels", queries.device)
    fprs = _checked_fprs(fprs)
    edges = _edges(bins)

    pair_queries, pair_gallery = _genuine_pairs(q_labels, g_labels)
    n_genuine = len(pair_queries)
    n_impostor = len(queries) * len(gallery) - n_genuine
    if n_genuine == 0 or n_impostor == 0:
        raise ValueError(
            f"{n_genuine} genuine and {n_impostor} impostor pairs: verification rates need both"
        )
    rows = max(1, _CHUNK_ELEMENTS // len(gallery))
    chunks = []  # (query slice, its genuine pairs with chunk-local query indices)
    for start in range(0, len(queries), rows):
        lo, hi = torch.searchsorted(
            pair_queries, torch.tensor([start, start + rows], device=queries.device)
        ).tolist()
        chunks.append(
            (slice(start, start + rows), (pair_queries[lo:hi] - start, pair_gallery[lo:hi]))
        )

    # Pass 1: the genuine scores, and histograms of genuine and of all scores (float32 counts are
    # exact up to 2**24 per chunk; the totals add up in float64).
    histograms = torch.zeros(2, bins, dtype=torch.float64, device=queries.device)
    genuine_parts = []
    for block, pairs in chunks:
        scores = _scores(queries[block], gallery)
        genuine_parts.append(scores[pairs])
        scores.clamp_(-1.0, 1.0)
        histograms[0] += torch.histc(scores, bins, -1.0, 1.0).double()
        histograms[1] += torch.histc(scores[pairs], bins, -1.0, 1.0).double()
    genuine_scores = torch.cat(genuine_parts)

    # Distinct genuine scores ascending, and how many genuine scores are >= and > each.
    values, counts = torch.unique(genuine_scores, sorted=True, return_counts=True)
    genuine_ge = counts.flip(0).cumsum(0).flip(0)
    genuine_gt = genuine_ge - counts

    # Pass 2: the same for impostor scores. With v+ the next float32 above v, searching
    # [v0, v0+, v1, v1+, ...] for a score s finds 2 * #{v < s} + (1 if s is some v else 0).
    steps = torch.stack([values, torch.nextafter(values, torch.full_like(values, math.inf))], 1)
    steps = steps.flatten()
    positions = torch.zeros(len(steps) + 1, dtype=torch.int64, device=queries.device)
    for block, pairs in chunks:
        scores = _scores(queries[block], gallery)
        scores[pairs] = -math.inf  # genuine: below every value, so counted nowhere
        positions += torch.bincount(
            torch.searchsorted(steps, scores, right=True).flatten(), minlength=len(steps) + 1
        )
    at_least = positions.flip(0).cumsum(0).flip(0)  # at_least[i] = #{position >= i}
    impostor_ge, impostor_gt = at_least[1::2], at_least[2::2]

    tpr_at_fpr, threshold_at_fpr = {}, {}
    for f in fprs:
        allowed = math.floor(Fraction(repr(f)) * n_impostor)
        # impostor_ge falls as the threshold rises: the lowest qualifying value is the first
        # one past those with too many impostors.
        k = int((impostor_ge > allowed).sum())
        qualifies = k < len(values)
        tpr_at_fpr[repr(f)] = int(genuine_ge[k]) / n_genuine if qualifies else 0.0
        threshold_at_fpr[repr(f)] = float(values[k]) if qualifies else None

    eer, eer_threshold = _equal_error(
        values, genuine_ge, genuine_gt, impostor_ge, impostor_gt, n_genuine, n_impostor
    )
    genuine_hist = [round(c) for c in histograms[1].tolist()]
    impostor_hist = [round(c) for c in (histograms[0] - histograms[1]).tolist()]
    return {
        "genuine_pairs": n_genuine,
        "impostor_pairs": n_impostor,
        "tpr_at_fpr": tpr_at_fpr,
        "threshold_at_fpr": threshold_at_fpr,
        "eer": eer,
        "eer_threshold": eer_threshold,
        "genuine_histogram": {"edges": edges, "counts": genuine_hist},
        "impostor_histogram": {"edges": list(edges), "counts": impostor_hist},
    }


def _normalised(embeddings: Any, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(embeddings).detach()
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be (N, D), got shape {tuple(tensor.shape)}")
    tensor = tensor.to(torch.float32)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return F.normalize(tensor, dim=1).to(torch.float64)  # normalised in float32, then see _scores


def _checked_fprs(fprs: Sequence[float]) -> tuple[float, ...]:
    fprs = tuple(float(f) for f in fprs)
    if not fprs or len(set(fprs)) != len(fprs) or not all(0.0 <= f <= 1.0 for f in fprs):
        raise ValueError(f"fprs must be distinct rates in [0, 1], got {fprs}")
    return fprs


def _edges(bins: int) -> list[float]:
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    return [round(-1.0 + 2.0 * i / bins, 12) for i in range(int(bins) + 1)]


def _scores(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """Float32 similarities summed in float64: the float32 rounding of the exact dot product, bar
    ~1e-7 of pairs lying within a float64 rounding error of a float32 halfway point. So the scores
    hardly depend on how the product was blocked: chunk size, BLAS and device agree."""
    return (queries @ gallery.T).to(torch.float32)


def _genuine_pairs(
    q_labels: torch.Tensor, g_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(query index, gallery index) of every genuine pair, by query index: O(pairs), no Q x G."""
    order = torch.argsort(g_labels, stable=True)
    sorted_labels = g_labels[order]
    first = torch.searchsorted(sorted_labels, q_labels)
    n = torch.searchsorted(sorted_labels, q_labels, right=True) - first
    pair_queries = torch.repeat_interleave(torch.arange(len(q_labels), device=n.device), n)
    offset = torch.arange(len(pair_queries), device=n.device) - (n.cumsum(0) - n)[pair_queries]
    return pair_queries, order[first[pair_queries] + offset]


def _equal_error(
    values: torch.Tensor,
    genuine_ge: torch.Tensor,
    genuine_gt: torch.Tensor,
    impostor_ge: torch.Tensor,
    impostor_gt: torch.Tensor,
    n_genuine: int,
    n_impostor: int,
) -> tuple[float, float]:
    """EER and its threshold from the ROC's corners, walked from the origin.

    For each distinct genuine score g, highest first, the ROC has a corner just above g (counts
    of scores > g) and one at g (>= g); between them it rises, vertically or, with impostors tied
    at g, diagonally, and from one g's ">=" corner to the next g's ">" corner it runs flat. In
    counts, FPR - FNR is proportional to d = false_accepts * N_g + true_accepts * N_i - N_i * N_g,
    which grows along the curve from -N_i * N_g at the origin to >= 0 at the last ">=" corner.
    """
    zero = torch.zeros(1, dtype=torch.int64, device=values.device)
    false_accepts = torch.cat([zero, torch.stack([impostor_gt, impostor_ge], 1).flip(0).flatten()])
    true_accepts = torch.cat([zero, torch.stack([genuine_gt, genuine_ge], 1).flip(0).flatten()])
    d = false_accepts * n_genuine + true_accepts * n_impostor - n_impostor * n_genuine
    i = int((d < 0).sum())  # the crossing lies on the segment from corner i - 1 to corner i
    d0, d1 = int(d[i - 1]), int(d[i])
    a0, a1 = int(false_accepts[i - 1]), int(false_accepts[i])
    eer = (a0 + (a1 - a0) * Fraction(-d0, d1 - d0)) / n_impostor
    # Corner i is at g (odd i: ">" corner, the curve reached it flat from the previous g's ">="
    # corner, whose g then has FNR = EER) or is g's ">=" corner (even i), g ranked (i - 1) // 2.
    rank = (i - 1) // 2
    if i % 2 == 1 and rank > 0:
        rank -= 1
    return float(eer), float(values.flip(0)[rank])
