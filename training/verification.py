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
consecutive genuine scores the ROC is flat. The Q x G similarities are computed a chunk of queries
at a time, in two passes. The first keeps the genuine scores (about 2 per query in the forensic
setup) and histograms all scores in bins finer than the reported ones (which are sums of them).
That bounds each genuine score's impostor counts between the impostors in the bins above its own
and those in its bin and above, which already settles most of the answers: only the genuine scores
whose bounds leave an answer open (a few bins' worth, near each FPR bound and near the EER) get
exact counts, from a second pass that counts the impostor scores above the lowest of them. With
many ties or very wide bins that can be every genuine score: the counts are exact then too, only
slower. Memory stays bounded by the chunk plus the genuine scores (4 bytes each), and both passes
make the same matrix products, so each pair has one score. Given the scores, the counts are exact
and EER is computed as a fraction, rounded once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F

from training.evaluate import as_labels, label_index, matching_pairs

# Similarity entries per chunk of queries, as in training/evaluate.py: tens of MB of temporaries.
_CHUNK_ELEMENTS = 1 << 21

# About how many bins pass 1 histograms the scores into. torch.histc costs about the same up to a
# few thousand bins (their counts stay in the L1 cache), and the finer the bins, the fewer genuine
# scores pass 2 has to count exactly.
_FINE_BINS = 2048


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
    queries, gallery = _embeddings(query_emb, gallery_emb)
    q_labels = as_labels(query_labels, len(queries), "query_labels", queries.device)
    g_labels = as_labels(gallery_labels, len(gallery), "gallery_labels", queries.device)
    fprs = _checked_fprs(fprs)
    edges = _edges(bins)
    trials = _Trials.of(queries, gallery, q_labels, g_labels)

    split = _fine_split(bins)
    fine, genuine_scores = _first_pass(trials, bins * split)
    histograms = fine.view(2, bins, split).sum(2)  # what torch.histc counts in `bins` bins
    roc = _roc_counts(trials, fine, genuine_scores, fprs)

    n_genuine, n_impostor = trials.n_genuine, trials.n_impostor
    tpr_at_fpr, threshold_at_fpr = _rates_at_fprs(
        roc.values, roc.genuine_ge, roc.impostor_ge, fprs, n_genuine, n_impostor
    )
    eer, eer_threshold = _equal_error(
        roc.values,
        roc.genuine_ge,
        roc.genuine_gt,
        roc.impostor_ge,
        roc.impostor_gt,
        n_genuine,
        n_impostor,
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


@dataclass(frozen=True)
class _Trials:
    """Every (query, gallery image) pair, scored a chunk of queries at a time."""

    queries: torch.Tensor
    gallery: torch.Tensor
    chunks: list  # (query slice, its genuine pairs with chunk-local query indices)
    n_genuine: int
    n_impostor: int

    @classmethod
    def of(
        cls,
        queries: torch.Tensor,
        gallery: torch.Tensor,
        q_labels: torch.Tensor,
        g_labels: torch.Tensor,
    ) -> _Trials:
        pair_queries, pair_gallery = matching_pairs(q_labels, label_index(g_labels))
        n_genuine = len(pair_queries)
        n_impostor = len(queries) * len(gallery) - n_genuine
        if n_genuine == 0 or n_impostor == 0:
            raise ValueError(
                f"{n_genuine} genuine and {n_impostor} impostor pairs: verification rates need both"
            )
        rows = max(1, _CHUNK_ELEMENTS // len(gallery))
        chunks = []
        for start in range(0, len(queries), rows):
            lo, hi = torch.searchsorted(
                pair_queries, torch.tensor([start, start + rows], device=queries.device)
            ).tolist()
            chunks.append(
                (slice(start, start + rows), (pair_queries[lo:hi] - start, pair_gallery[lo:hi]))
            )
        return cls(queries, gallery, chunks, n_genuine, n_impostor)


@dataclass(frozen=True)
class _RocCounts:
    """The distinct genuine scores ascending, and how many genuine and impostor scores are >= and
    > each: all the ROC needs (see the module docstring)."""

    values: torch.Tensor
    genuine_ge: torch.Tensor
    genuine_gt: torch.Tensor
    impostor_ge: torch.Tensor
    impostor_gt: torch.Tensor


def _first_pass(trials: _Trials, n_fine_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pass 1: histograms of all scores and of the genuine ones in n_fine_bins bins (row 0 and
    row 1), and the genuine scores. float32 counts are exact up to 2**24 per chunk; the totals add
    up in float64."""
    fine = torch.zeros(2, n_fine_bins, dtype=torch.float64, device=trials.queries.device)
    genuine_parts = []
    for block, pairs in trials.chunks:
        scores = _products(trials.queries[block], trials.gallery).to(torch.float32)
        genuine_parts.append(scores[pairs])
        fine[0] += _histogram(scores, n_fine_bins)
    genuine_scores = torch.cat(genuine_parts)
    fine[1] = sum(_histogram(part, n_fine_bins) for part in genuine_scores.split(_CHUNK_ELEMENTS))
    return fine, genuine_scores


def _roc_counts(
    trials: _Trials, fine: torch.Tensor, genuine_scores: torch.Tensor, fprs: tuple[float, ...]
) -> _RocCounts:
    """The counts at each distinct genuine score: the impostor counts bounded by pass 1's fine
    bins, and made exact by pass 2 where the bounds leave an answer open. Every other value keeps
    its lower bound, which lies on the same side of every decision as its exact count, so the
    answers come out as if every count were exact."""
    values, counts = torch.unique(genuine_scores, sorted=True, return_counts=True)
    genuine_ge = counts.flip(0).cumsum(0).flip(0)
    genuine_gt = genuine_ge - counts

    # Each value's impostor counts (>= and > it) lie between the impostors in the fine bins above
    # its bin and those in its bin and above.
    value_bin = _bin_of_sorted(values, fine.shape[1])
    lower, upper = _count_bounds((fine[0] - fine[1]).to(torch.int64), value_bin)

    impostor_ge, impostor_gt = lower.clone(), lower.clone()
    needs_exact = _needs_exact_counts(
        lower, upper, genuine_ge, genuine_gt, fprs, trials.n_genuine, trials.n_impostor
    )
    if needs_exact.any():
        impostor_ge[needs_exact], impostor_gt[needs_exact] = _impostor_counts(
            values[needs_exact], trials.chunks, trials.queries, trials.gallery
        )
    return _RocCounts(values, genuine_ge, genuine_gt, impostor_ge, impostor_gt)


def _embeddings(query_emb: Any, gallery_emb: Any) -> tuple[torch.Tensor, torch.Tensor]:
    queries = _normalised(query_emb, "query_emb")
    gallery = _normalised(gallery_emb, "gallery_emb").to(queries.device)
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"embeddings must share D, got {tuple(queries.shape)} and {tuple(gallery.shape)}"
        )
    return queries, gallery


def _normalised(embeddings: Any, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(embeddings).detach()
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be (N, D), got shape {tuple(tensor.shape)}")
    tensor = tensor.to(torch.float32)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return F.normalize(tensor, dim=1).to(torch.float64)  # normalised in float32, then see _products


def _checked_fprs(fprs: Sequence[float]) -> tuple[float, ...]:
    fprs = tuple(float(f) for f in fprs)
    if not fprs or len(set(fprs)) != len(fprs) or not all(0.0 <= f <= 1.0 for f in fprs):
        raise ValueError(f"fprs must be distinct rates in [0, 1], got {fprs}")
    return fprs


def _edges(bins: int) -> list[float]:
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    return [round(-1.0 + 2.0 * i / bins, 12) for i in range(int(bins) + 1)]


def _fine_split(bins: int) -> int:
    """How many pass-1 bins make one reported bin: a power of two (see _histogram) that makes
    about _FINE_BINS in all."""
    return 1 << max(0, (_FINE_BINS // bins).bit_length() - 1)


def _allowed_false_accepts(f: float, n_impostor: int) -> int:
    """The most impostor pairs FPR f allows, f read as the decimal it prints as."""
    return math.floor(Fraction(repr(f)) * n_impostor)


def _products(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """The dot products, summed in float64, whose float32 rounding is the score: the float32
    rounding of the exact dot product, bar ~1e-7 of pairs lying within a float64 rounding error of
    a float32 halfway point. So the scores hardly depend on how the product was blocked: chunk
    size, BLAS and device agree."""
    return queries @ gallery.T


def _histogram(scores: torch.Tensor, n_bins: int) -> torch.Tensor:
    """torch.histc of the scores clamped to [-1, 1], in n_bins bins over [-1, 1], as float64.

    histc puts a float32 score s in bin trunc(((s + 1) * n_bins) / 2), each step rounded to
    float32 (and the top edge in the last bin). Multiplying n_bins by a power of two m multiplies
    the rounded product by m exactly, so the bin at n_bins * m is m times the bin at n_bins, plus
    less than m: summing runs of m fine bins gives exactly the coarse counts.
    """
    counts = torch.histc(scores, n_bins, -1.0, 1.0).double()
    if counts.sum() < scores.numel():  # histc skipped scores rounded just outside [-1, 1]: rare
        counts = torch.histc(scores.clamp(-1.0, 1.0), n_bins, -1.0, 1.0).double()
    return counts


def _bin_of_sorted(values: torch.Tensor, n_bins: int) -> torch.Tensor:
    """The _histogram bin of each of these ascending scores: the bin only grows with the score, so
    the i-th value lies in the first bin where the running count of values exceeds i."""
    per_bin = sum(_histogram(part, n_bins) for part in values.split(_CHUNK_ELEMENTS))
    running = per_bin.to(torch.int64).cumsum(0)
    return torch.searchsorted(running, torch.arange(len(values), device=values.device), right=True)


def _count_bounds(
    per_bin: torch.Tensor, value_bin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For values in bins value_bin: the counts in the bins above, and in their bin and above."""
    lower = (per_bin.flip(0).cumsum(0).flip(0) - per_bin)[value_bin]
    return lower, lower + per_bin[value_bin]


def _needs_exact_counts(
    lower: torch.Tensor,
    upper: torch.Tensor,
    genuine_ge: torch.Tensor,
    genuine_gt: torch.Tensor,
    fprs: tuple[float, ...],
    n_genuine: int,
    n_impostor: int,
) -> torch.Tensor:
    """Which distinct genuine values need exact impostor counts, when both their counts (>= and >
    the value) are only known to lie in [lower, upper].

    An FPR bound needs the values whose bounds straddle the false accepts it allows. The EER needs
    the ROC corners (see _equal_error) that the bounds do not place on one side of the crossing,
    and the exact counts at the two corners around it: every corner from the last one surely
    before it to the first one surely after it. Any other value may keep its lower bound: that
    lies on the same side of each of these tests as its exact count (and is it, when no impostor
    shares the value's bin).
    """
    needed = torch.zeros_like(lower, dtype=torch.bool)
    for f in fprs:
        allowed = _allowed_false_accepts(f, n_impostor)
        needed |= (lower <= allowed) & (upper > allowed)

    # d grows along the corners, so the corners with d < 0 are the first ones.
    d_low = _crossing_sides(genuine_ge, genuine_gt, lower, lower, n_genuine, n_impostor)
    d_high = _crossing_sides(genuine_ge, genuine_gt, upper, upper, n_genuine, n_impostor)
    surely_before = int((d_high < 0).sum())
    maybe_before = int((d_low < 0).sum())
    # Corner 0 is the origin; corners 2j + 1 and 2j + 2 belong to the j-th highest value.
    corners = torch.arange(max(surely_before - 1, 1), maybe_before + 1, device=lower.device)
    needed[len(lower) - 1 - (corners - 1) // 2] = True
    return needed & (lower < upper)  # equal bounds are the exact counts


def _impostor_counts(
    values: torch.Tensor, chunks: list, queries: torch.Tensor, gallery: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pass 2: how many impostor scores are >= and how many > each of these ascending values.

    It counts the float64 products without rounding them: one rounds to a float32 >= v exactly
    when it is >= _rounding_threshold(v), and > v when it is >= the threshold of the next float32
    above v. Only products above the lowest threshold land in a bin; the others cost one
    comparison each.
    """
    successors = torch.nextafter(values, torch.full_like(values, math.inf))
    steps = _rounding_threshold(torch.stack([values, successors], 1).flatten())
    # Adjacent float32 values share a step: merge equal edges, keeping where each step went.
    edges, step_edge = torch.unique_consecutive(steps, return_inverse=True)
    edges = torch.cat([edges, edges.new_full((1,), math.inf)])
    in_bins = torch.zeros(len(edges) - 1, dtype=torch.float64, device=values.device)
    for block, pairs in chunks:
        products = _products(queries[block], gallery)
        products[pairs] = -math.inf  # genuine: below every edge, so counted nowhere
        in_bins += _counts_between(products, edges)
    at_least = in_bins.flip(0).cumsum(0).flip(0).to(torch.int64)[step_edge]
    return at_least[0::2], at_least[1::2]


def _rounding_threshold(values: torch.Tensor) -> torch.Tensor:
    """For float32 values v, the least float64 x whose float32 rounding is >= v.

    x rounds to v or above when it is above the midpoint between v and the float32 below it, or
    on it when v's last significand bit is 0 (round half to even). The midpoint of two float32
    values is exact in float64.
    """
    below = torch.nextafter(values, torch.full_like(values, -math.inf))
    midpoint = (values.double() + below.double()) / 2
    odd = (values.view(torch.int32) & 1).bool()
    return torch.where(
        odd, torch.nextafter(midpoint, torch.full_like(midpoint, math.inf)), midpoint
    )


def _counts_between(products: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """How many products lie in each [edges[i], edges[i + 1]), as float64 (the last edge, inf, is
    above every product)."""
    if products.device.type == "cpu":
        # A binary search only for the products within the edges, one comparison for the others.
        return torch.histogram(products, edges).hist
    # torch.histogram runs on the CPU only.
    position = torch.searchsorted(edges, products.flatten(), right=True)
    return torch.bincount(position, minlength=len(edges) + 1)[1:-1].double()


def _rates_at_fprs(
    values: torch.Tensor,
    genuine_ge: torch.Tensor,
    impostor_ge: torch.Tensor,
    fprs: tuple[float, ...],
    n_genuine: int,
    n_impostor: int,
) -> tuple[dict[str, float], dict[str, float | None]]:
    """tpr_at_fpr and threshold_at_fpr, as the module docstring defines them."""
    tpr_at_fpr, threshold_at_fpr = {}, {}
    for f in fprs:
        allowed = _allowed_false_accepts(f, n_impostor)
        # impostor_ge falls as the threshold rises: the lowest qualifying value is the first
        # one past those with too many impostors.
        k = int((impostor_ge > allowed).sum())
        qualifies = k < len(values)
        tpr_at_fpr[repr(f)] = int(genuine_ge[k]) / n_genuine if qualifies else 0.0
        threshold_at_fpr[repr(f)] = float(values[k]) if qualifies else None
    return tpr_at_fpr, threshold_at_fpr


def _crossing_sides(
    genuine_ge: torch.Tensor,
    genuine_gt: torch.Tensor,
    impostor_ge: torch.Tensor,
    impostor_gt: torch.Tensor,
    n_genuine: int,
    n_impostor: int,
) -> torch.Tensor:
    """d at every ROC corner, walked from the origin (see _equal_error): negative before the
    crossing with FPR = FNR, >= 0 from it on."""
    false_accepts, true_accepts = _roc_corners(genuine_ge, genuine_gt, impostor_ge, impostor_gt)
    return false_accepts * n_genuine + true_accepts * n_impostor - n_impostor * n_genuine


def _roc_corners(
    genuine_ge: torch.Tensor,
    genuine_gt: torch.Tensor,
    impostor_ge: torch.Tensor,
    impostor_gt: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(false accepts, true accepts) at the origin, then just above and at each distinct genuine
    score, highest first."""
    zero = torch.zeros(1, dtype=torch.int64, device=genuine_ge.device)
    false_accepts = torch.cat([zero, torch.stack([impostor_gt, impostor_ge], 1).flip(0).flatten()])
    true_accepts = torch.cat([zero, torch.stack([genuine_gt, genuine_ge], 1).flip(0).flatten()])
    return false_accepts, true_accepts


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
    false_accepts, _ = _roc_corners(genuine_ge, genuine_gt, impostor_ge, impostor_gt)
    d = _crossing_sides(genuine_ge, genuine_gt, impostor_ge, impostor_gt, n_genuine, n_impostor)
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
