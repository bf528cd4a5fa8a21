"""Retrieval metrics of the evaluation protocol (PAPER.md): mAP, mAP@R, standard and all-shots CMC.

Every one of these metrics depends only on the rank of each relevant gallery item in its query's
ranking, so the ranking is never materialised: for a chunk of queries, the ranks of just the
relevant items are counted with one binary search per gallery item into that query's sorted
relevant keys: 10,000 x 10,000 costs a fraction of a full sort of every row.

Ranking is by similarity (dot product, i.e. cosine for L2-normalised embeddings) descending.
Equal similarities are ordered by gallery index, lower first, as a stable sort would: an exact tie
(duplicate images, duplicate embeddings) then has one reproducible answer instead of one that
depends on the sorting algorithm. Similarities are computed in float32, the precision the model's
embeddings have, so that a (similarity, gallery index) pair packs into one int64 key whose order is
exactly that ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# Similarity entries ranked per chunk of queries. Memory stays bounded whatever the sizes, and a
# (chunk, gallery) int64 tensor of 16 MB stays in cache: larger chunks ran slower, not faster.
_CHUNK_ELEMENTS = 1 << 21


def retrieval_metrics(
    query_emb: Any,
    query_labels: Any,
    gallery_emb: Any,
    gallery_labels: Any,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, Any]:
    """Rank the whole gallery for every query and score where the query's identity lands.

    Embeddings are (N, D) and (M, D) torch tensors or numpy arrays, assumed L2-normalised; labels
    are identities (int64-convertible), a gallery item being relevant to a query when the labels
    are equal. Returns fractions in [0, 1]:

    - "mAP": mean over queries of the average precision over the whole ranked gallery;
    - "mAP@R": mean over queries of (1/R) * sum_{i<=R} P@i * rel_i, R = the query's number of
      relevant gallery items (Musgrave et al.'s MAP@R);
    - "cmc": {k: share of queries whose first relevant item is within the top k};
    - "cmc_all_shots": {k: mean over queries of the share of its relevant items preceded by fewer
      than k irrelevant ones} (open-reid's all-shots CMC, used by the paper's table).

    Raises ValueError if a query has no relevant gallery item: its AP is undefined, and silently
    dropping or zero-scoring it would distort the comparison with the paper.
    """
    queries, gallery = _as_embeddings(query_emb, gallery_emb)
    q_labels = as_labels(query_labels, len(queries), "query_labels", queries.device)
    g_labels = as_labels(gallery_labels, len(gallery), "gallery_labels", queries.device)
    ks = _checked_ks(ks)
    n_relevant = _count_relevant(q_labels, g_labels)

    rows_per_chunk = max(1, _CHUNK_ELEMENTS // len(gallery))  # gallery not empty: R > 0
    totals = torch.zeros(2 + 2 * len(ks), dtype=torch.float64, device=queries.device)
    for start in range(0, len(queries), rows_per_chunk):
        chunk = slice(start, start + rows_per_chunk)
        ranks, hits, n_rel = _relevant_ranks(
            queries[chunk], q_labels[chunk], n_relevant[chunk], gallery, g_labels
        )
        totals += _metric_sums(ranks, hits, n_rel, ks)

    means = (totals / len(queries)).tolist()
    n = len(ks)
    return {
        "mAP": means[0],
        "mAP@R": means[1],
        "cmc": dict(zip(ks, means[2 : 2 + n], strict=True)),
        "cmc_all_shots": dict(zip(ks, means[2 + n :], strict=True)),
    }


def _as_embeddings(query_emb: Any, gallery_emb: Any) -> tuple[torch.Tensor, torch.Tensor]:
    queries = torch.as_tensor(query_emb).detach()
    gallery = torch.as_tensor(gallery_emb).detach().to(queries.device)
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            "embeddings must be (N, D) and (M, D) with the same D, got "
            f"{tuple(queries.shape)} and {tuple(gallery.shape)}"
        )
    if len(queries) == 0:
        raise ValueError("no queries: the metrics are means over queries")
    queries, gallery = queries.to(torch.float32), gallery.to(torch.float32)
    if not (torch.isfinite(queries).all() and torch.isfinite(gallery).all()):
        raise ValueError("embeddings contain NaN or infinity, which cannot be ranked")
    return queries, gallery


def as_labels(labels: Any, n: int, name: str, device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(labels, dtype=torch.int64).to(device)
    if tensor.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(tensor.shape)}")
    return tensor


def _checked_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1 or len(set(ks)) != len(ks):
        raise ValueError(f"ks must be distinct positive ranks, got {ks}")
    return ks


def _count_relevant(q_labels: torch.Tensor, g_labels: torch.Tensor) -> torch.Tensor:
    """R for every query, refusing queries whose identity is absent from the gallery."""
    identities, counts = torch.unique(g_labels, return_counts=True)
    n_relevant = torch.zeros_like(q_labels)
    if len(identities):
        slot = torch.searchsorted(identities, q_labels).clamp(max=len(identities) - 1)
        n_relevant = torch.where(identities[slot] == q_labels, counts[slot], 0)
    n_missing = int((n_relevant == 0).sum())
    if n_missing:
        raise ValueError(
            f"{n_missing} of {len(q_labels)} queries have no relevant gallery item "
            "(their identity is not in the gallery), so their average precision is undefined"
        )
    return n_relevant


def _ranking_keys(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """One int64 per (query, gallery item), larger = ranked earlier, all distinct within a row.

    The high 32 bits are the float32 similarity's bit pattern remapped so that integer order is
    float order; the low 32 bits are the inverted gallery index, so that equal similarities put the
    lower index first.
    """
    similarity = queries @ gallery.T
    similarity += 0.0  # turns -0.0 into +0.0, which must tie with it
    bits = similarity.view(torch.int32)
    ordered = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(torch.int64)  # negatives: reverse order
    inverted_index = 0xFFFFFFFF - torch.arange(len(gallery), device=gallery.device)
    return ordered.bitwise_left_shift_(32).bitwise_or_(inverted_index)


def _sorted_relevant_keys(
    keys: torch.Tensor, relevant: torch.Tensor, n_relevant: torch.Tensor
) -> torch.Tensor:
    """Each query's relevant keys ascending, padded on the right with int64 max to the largest R."""
    rows, cols = relevant.nonzero(as_tuple=True)
    first_of_row = n_relevant.cumsum(0) - n_relevant
    slot = torch.arange(len(rows), device=rows.device) - first_of_row[rows]
    padded = torch.full(
        (len(keys), int(n_relevant.max())), torch.iinfo(torch.int64).max, device=keys.device
    )
    padded[rows, slot] = keys[rows, cols]
    return padded.sort(dim=1).values


def _relevant_ranks(
    queries: torch.Tensor,
    q_labels: torch.Tensor,
    n_relevant: torch.Tensor,
    gallery: torch.Tensor,
    g_labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """0-based rank of every relevant (query, gallery item) pair, its hits and its query's R.

    hits = how many relevant items rank at or before this one. A relevant item's rank is the
    number of gallery keys above its key; one binary search per gallery item into its query's
    sorted relevant keys says how many of them it outranks, and a histogram of those counts turns
    into the ranks.
    """
    n_queries, width = len(queries), int(n_relevant.max())
    keys = _ranking_keys(queries, gallery)
    relevant_keys = _sorted_relevant_keys(keys, g_labels[None, :] == q_labels[:, None], n_relevant)

    # outranked[q, j] = how many of q's relevant keys are below gallery item j's key; shifted by
    # q * (width + 1) so one bincount makes every query's histogram.
    outranked = torch.searchsorted(relevant_keys, keys)
    outranked += torch.arange(n_queries, device=keys.device)[:, None] * (width + 1)
    histogram = torch.bincount(outranked.flatten(), minlength=n_queries * (width + 1))
    # The items ranked before the t-th smallest relevant key are those outranking more than t.
    ranks = len(gallery) - histogram.view(n_queries, width + 1).cumsum(1)[:, :width]

    t = torch.arange(width, device=keys.device).expand(n_queries, -1)
    r = n_relevant[:, None].expand(-1, width)
    real = t < r  # drops the padding
    return ranks[real], r[real] - t[real], r[real]


def _metric_sums(
    ranks: torch.Tensor, hits: torch.Tensor, n_rel: torch.Tensor, ks: tuple[int, ...]
) -> torch.Tensor:
    """Sums over queries of each metric, from one entry per relevant (query, gallery) pair."""
    weight = 1.0 / n_rel.to(torch.float64)  # each query weighs 1 whatever its R
    precision = hits.to(torch.float64) / (ranks + 1)
    irrelevant_before = ranks - (hits - 1)
    first = hits == 1
    sums = [(precision * weight).sum(), (precision * weight * (ranks < n_rel)).sum()]
    sums += [(first & (ranks < k)).sum().to(torch.float64) for k in ks]
    sums += [(weight * (irrelevant_before < k)).sum() for k in ks]
    return torch.stack(sums)
