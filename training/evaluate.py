"""Retrieval metrics of the evaluation protocol (docs/method.md, "Retrieval metrics"): mAP, mAP@R,
standard and all-shots CMC.

Every one of these metrics depends only on the rank of each relevant gallery item in its query's
ranking, so the ranking is never materialised: for a block of queries, the ranks of just the
relevant items are counted. An item ranked below all of its query's relevant items changes none
of those ranks, and with a useful embedding that is nearly every item: only the others (found with
one comparison per entry against the query's lowest relevant similarity) get a ranking key, and
one binary search each into the block's sorted relevant keys says how many relevant items it
outranks. 10,000 x 10,000 then costs a few times the similarity matrix itself; with embeddings no
better than chance most items rank above some relevant item, and it costs a binary search per
entry.

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

# Similarity entries per chunk of queries: the matrix products are made, and the metrics summed
# (float64 sums depend on how their terms are grouped), a chunk at a time. Ranking takes blocks of
# whole chunks: memory stays bounded whatever the sizes, and the many small operations that rank
# the few candidates of a useful embedding run a quarter as often (each has a fixed cost; on a
# busy machine, mostly that of handing work to the other threads).
_CHUNK_ELEMENTS = 1 << 21
_BLOCK_ELEMENTS = 1 << 23
# When more than this share of a block's entries are candidates (see _relevant_ranks), picking
# them out costs more than it saves: every entry is searched then.
_DENSE_FRACTION = 0.4


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
    by_label = label_index(g_labels)

    rows_per_chunk = max(1, _CHUNK_ELEMENTS // len(gallery))  # gallery not empty: R > 0
    rows_per_block = rows_per_chunk * max(1, _BLOCK_ELEMENTS // (rows_per_chunk * len(gallery)))
    totals = torch.zeros(2 + 2 * len(ks), dtype=torch.float64, device=queries.device)
    for start in range(0, len(queries), rows_per_block):
        block = slice(start, start + rows_per_block)
        chunks = queries[block].split(rows_per_chunk)
        similarity = torch.cat([chunk @ gallery.T for chunk in chunks])
        pairs = matching_pairs(q_labels[block], by_label)
        ranked = _relevant_ranks(similarity, pairs, n_relevant[block])
        # Summed chunk by chunk: each chunk's relevant pairs follow the previous chunk's.
        sizes = [int(n.sum()) for n in n_relevant[block].split(rows_per_chunk)]
        for ranks, hits, n_rel in zip(*(part.split(sizes) for part in ranked), strict=True):
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


def label_index(g_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gallery positions sorted by label (stable, so by position within a label), and their
    labels in that order: what matching_pairs looks labels up in."""
    order = torch.argsort(g_labels, stable=True)
    return order, g_labels[order]


def matching_pairs(
    q_labels: torch.Tensor, by_label: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(query index, gallery index) of every pair with equal labels, by query index, then gallery
    index; by_label = label_index(gallery labels). O(pairs), no Q x G."""
    order, sorted_labels = by_label
    first = torch.searchsorted(sorted_labels, q_labels)
    n = torch.searchsorted(sorted_labels, q_labels, right=True) - first
    pair_queries = torch.repeat_interleave(torch.arange(len(q_labels), device=n.device), n)
    offset = torch.arange(len(pair_queries), device=n.device) - (n.cumsum(0) - n)[pair_queries]
    return pair_queries, order[first[pair_queries] + offset]


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


def _ranking_keys(
    rows: torch.Tensor, similarity: torch.Tensor, cols: torch.Tensor, n_gallery: int
) -> torch.Tensor:
    """One int64 per (query row, gallery item) pair: ordered by row, then larger = ranked earlier
    within the row, all distinct. Rows and cols broadcast against the similarities.

    The middle 32 bits are the float32 similarity's bit pattern remapped so that integer order is
    float order; below them the inverted gallery index, so that equal similarities put the lower
    index first; above them the row, so that a block's keys sort query by query. 63 bits suffice
    for galleries under 2**31 items, as a block holds one query or at most 2**23 entries.
    """
    bits = (similarity + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0, which must tie
    keys = (bits ^ (bits >> 31).bitwise_and_(0x7FFFFFFF)).to(torch.int64)  # negatives reversed
    keys += (rows << 32) + (1 << 31)  # + 2**31: the similarity part runs 0 .. 2**32 - 1
    keys <<= max(1, (n_gallery - 1).bit_length())
    return keys.bitwise_or_(n_gallery - 1 - cols)


def _relevant_ranks(
    similarity: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor], n_relevant: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """0-based rank of every relevant (query, gallery item) pair, its hits and its query's R: query
    by query, and within a query from the lowest-ranked relevant item up.

    similarity is (queries, gallery); pairs = (query, gallery index) of the relevant pairs, by
    query; n_relevant = each query's R. hits = how many relevant items rank at or before this one.
    A relevant item's rank is the number of gallery keys above its key: one binary search per item
    into its query's sorted relevant keys says how many of them it outranks, and a histogram of
    those counts turns into the ranks. Only candidates (items that may outrank one of their
    query's relevant items) need one, unless there are too many to be worth picking out.
    """
    n_queries, n_gallery = similarity.shape
    width = int(n_relevant.max())
    rows, cols = pairs
    relevant_similarity = similarity[rows, cols]
    # Keys sort by row first, so the sorted keys stay grouped by row as `rows` is.
    relevant_keys, order = _ranking_keys(rows, relevant_similarity, cols, n_gallery).sort()
    first = n_relevant.cumsum(0) - n_relevant  # where each query's relevant keys start
    t = torch.arange(len(rows), device=rows.device) - first[rows]  # 0 = the lowest-ranked

    # An item whose similarity is below its query's lowest relevant one (that of the query's
    # smallest relevant key) ranks below every relevant item. "Not below" rather than ">=" keeps
    # NaN similarities as candidates, as their keys may be high.
    lowest = relevant_similarity[order][first]
    candidates = similarity.lt(lowest[:, None]).logical_not_()

    # Every query's histogram of how many of its relevant keys an item's key is above: item (q, j)
    # counts in bin q * (width + 1) + that number, so that one bincount makes them all.
    if candidates.count_nonzero() > _DENSE_FRACTION * candidates.numel():
        # Too many candidates to pick out: search every item's key among its query's relevant
        # keys, a chunk of queries at a time (a block's int64 keys would not stay in cache).
        padded = torch.full((n_queries, width), torch.iinfo(torch.int64).max, device=rows.device)
        padded[rows, t] = relevant_keys  # int64 max: above every key, so never outranked
        histogram = torch.zeros(n_queries * (width + 1), dtype=torch.int64, device=rows.device)
        item_cols = torch.arange(n_gallery, device=rows.device)
        rows_per_chunk = max(1, _CHUNK_ELEMENTS // n_gallery)
        for start in range(0, n_queries, rows_per_chunk):
            part = slice(start, start + rows_per_chunk)
            item_rows = torch.arange(n_queries, device=rows.device)[part, None]
            keys = _ranking_keys(item_rows, similarity[part], item_cols, n_gallery)
            outranked = torch.searchsorted(padded[part], keys)
            outranked += item_rows * (width + 1)
            histogram += torch.bincount(outranked.flatten(), minlength=len(histogram))
    else:
        # Search the candidates' keys among all the block's relevant keys, which sort by row.
        item_rows, item_cols = candidates.nonzero(as_tuple=True)
        keys = _ranking_keys(item_rows, similarity[item_rows, item_cols], item_cols, n_gallery)
        outranked = torch.searchsorted(relevant_keys, keys) - first[item_rows]
        outranked += item_rows * (width + 1)
        histogram = torch.bincount(outranked, minlength=n_queries * (width + 1))

    # The items ranked before the t-th smallest relevant key are those outranking more than t.
    outranking = histogram.view(n_queries, width + 1).flip(1).cumsum(1).flip(1)
    n_rel = n_relevant[rows]
    return outranking[rows, t + 1], n_rel - t, n_rel


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
