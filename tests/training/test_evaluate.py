"""Retrieval metrics against a plain loop-by-loop reference and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training import evaluate
from training.evaluate import retrieval_metrics


def reference_metrics(
    queries: np.ndarray,
    query_labels: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    ks: tuple[int, ...],
) -> dict:
    """The definitions of docs/method.md ("Retrieval metrics") followed literally, one query at a
    time."""
    similarity = queries.astype(np.float64) @ gallery.astype(np.float64).T
    n_gallery = len(gallery)
    sums = {"mAP": 0.0, "mAP@R": 0.0}
    cmc = dict.fromkeys(ks, 0.0)
    all_shots = dict.fromkeys(ks, 0.0)
    for q in range(len(queries)):
        order = sorted(range(n_gallery), key=lambda j: (-similarity[q, j], j))
        relevant = [gallery_labels[j] == query_labels[q] for j in order]
        n_relevant = sum(relevant)
        hits = 0
        irrelevant_seen = 0
        first_relevant_rank = None
        for rank, is_relevant in enumerate(relevant, start=1):
            if not is_relevant:
                irrelevant_seen += 1
                continue
            hits += 1
            sums["mAP"] += hits / rank / n_relevant
            if rank <= n_relevant:
                sums["mAP@R"] += hits / rank / n_relevant
            if first_relevant_rank is None:
                first_relevant_rank = rank
            for k in ks:
                all_shots[k] += (irrelevant_seen < k) / n_relevant
        for k in ks:
            cmc[k] += first_relevant_rank <= k
    n = len(queries)
    return {
        "mAP": sums["mAP"] / n,
        "mAP@R": sums["mAP@R"] / n,
        "cmc": {k: v / n for k, v in cmc.items()},
        "cmc_all_shots": {k: v / n for k, v in all_shots.items()},
    }


def assert_metrics_equal(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name in ("mAP", "mAP@R"):
        assert actual[name] == pytest.approx(expected[name], abs=1e-12), name
    for name in ("cmc", "cmc_all_shots"):
        assert list(actual[name]) == list(expected[name]), name
        for k in expected[name]:
            assert actual[name][k] == pytest.approx(expected[name][k], abs=1e-12), (name, k)


def dyadic_cohort(
    seed: int, n_queries: int, n_gallery: int, n_identities: int, flip: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors of +-1/4 in 16 dimensions around one sign pattern per identity.

    Every dot product is a multiple of 1/16, exact in float32 whatever the summation order, so the
    reference ranks exactly as the code under test does, and there are many exact ties, including
    duplicated embeddings.
    """
    rng = np.random.default_rng(seed)
    patterns = rng.choice([-1.0, 1.0], size=(n_identities, 16))

    def around(labels: np.ndarray) -> np.ndarray:
        flips = np.where(rng.random((len(labels), 16)) < flip, -1.0, 1.0)
        return (patterns[labels] * flips / 4).astype(np.float32)

    gallery_labels = np.concatenate(
        [np.arange(n_identities), rng.integers(0, n_identities, n_gallery - n_identities)]
    )
    rng.shuffle(gallery_labels)
    query_labels = rng.integers(0, n_identities, n_queries)
    return around(query_labels), query_labels, around(gallery_labels), gallery_labels


@pytest.mark.parametrize(
    ("seed", "n_queries", "n_gallery", "n_identities", "flip"),
    [
        (0, 50, 70, 20, 0.25),  # one to a few relevant items per query
        (1, 40, 90, 3, 0.4),  # dozens of relevant items per query
        (2, 30, 30, 30, 0.3),  # exactly one relevant item per query
        (3, 60, 40, 8, 0.0),  # every identity's embeddings identical: ties everywhere
        (4, 25, 200, 25, 0.5),  # embeddings unrelated to identity
    ],
)
def test_matches_the_reference(
    seed: int, n_queries: int, n_gallery: int, n_identities: int, flip: float
) -> None:
    queries, q_labels, gallery, g_labels = dyadic_cohort(
        seed, n_queries, n_gallery, n_identities, flip
    )
    ks = (1, 2, 3, 5, 10, 1000)
    expected = reference_metrics(queries, q_labels, gallery, g_labels, ks)
    assert_metrics_equal(retrieval_metrics(queries, q_labels, gallery, g_labels, ks), expected)
    torch_inputs = [torch.as_tensor(a) for a in (queries, q_labels, gallery, g_labels)]
    assert_metrics_equal(retrieval_metrics(*torch_inputs, ks=ks), expected)


def test_chunks_of_queries_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    queries, q_labels, gallery, g_labels = dyadic_cohort(5, 97, 60, 6, 0.3)
    expected = reference_metrics(queries, q_labels, gallery, g_labels, (1, 5, 10))
    monkeypatch.setattr(evaluate, "_CHUNK_ELEMENTS", 7 * 60)  # 14 chunks, the last one short
    assert_metrics_equal(retrieval_metrics(queries, q_labels, gallery, g_labels), expected)


def test_one_query_four_gallery_items_by_hand() -> None:
    # Similarities to the query: g0 0.6 (relevant), g1 1.0, g2 0.0 (relevant), g3 0.8.
    # Ranking: g1, g3, g0, g2, so the relevant items sit at ranks 3 and 4, R = 2.
    # AP = (1/2) * (P@3 + P@4) = (1/2) * (1/3 + 2/4) = 5/12.
    # mAP@R: ranks 1..R=2 hold no relevant item, so 0.
    # CMC: first relevant at rank 3, so top-1 = top-2 = 0 and top-3 = 1.
    # All shots: both relevant items come after 2 irrelevant ones, so 0, 0, then 1 at k = 3.
    query = [[1.0, 0.0]]
    gallery = [[0.6, 0.8], [1.0, 0.0], [0.0, 1.0], [0.8, 0.6]]
    metrics = retrieval_metrics(np.array(query), [7], np.array(gallery), [7, 1, 7, 2], ks=(1, 2, 3))
    assert metrics["mAP"] == pytest.approx(5 / 12)
    assert metrics["mAP@R"] == 0.0
    assert metrics["cmc"] == {1: 0.0, 2: 0.0, 3: 1.0}
    assert metrics["cmc_all_shots"] == {1: 0.0, 2: 0.0, 3: 1.0}


def test_two_relevant_items_by_hand() -> None:
    # Ranking: relevant, irrelevant, relevant, irrelevant (similarities 1, 0.8, 0.6, 0); R = 2.
    # AP = (1/2) * (1/1 + 2/3) = 5/6; mAP@R = (1/2) * (1/1) = 1/2 (rank 3 is beyond R).
    # CMC top-1 = 1. All shots top-1: the second relevant item follows 1 irrelevant one: 1/2.
    query = [[1.0, 0.0]]
    gallery = [[0.0, 1.0], [0.6, 0.8], [1.0, 0.0], [0.8, 0.6]]
    metrics = retrieval_metrics(np.array(query), [3], np.array(gallery), [4, 3, 3, 5], ks=(1, 2))
    assert metrics["mAP"] == pytest.approx(5 / 6)
    assert metrics["mAP@R"] == pytest.approx(1 / 2)
    assert metrics["cmc"] == {1: 1.0, 2: 1.0}
    assert metrics["cmc_all_shots"] == {1: 0.5, 2: 1.0}


@pytest.mark.parametrize(("gallery_labels", "average_precision"), [([0, 1], 1.0), ([1, 0], 0.5)])
def test_ties_go_to_the_lower_gallery_index(
    gallery_labels: list[int], average_precision: float
) -> None:
    same = [0.6, 0.8]
    metrics = retrieval_metrics(np.array([same]), [0], np.array([same, same]), gallery_labels)
    assert metrics["mAP"] == average_precision


def test_all_shots_is_the_standard_cmc_with_one_relevant_item_per_query() -> None:
    rng = np.random.default_rng(6)
    gallery = torch.nn.functional.normalize(torch.as_tensor(rng.normal(size=(300, 32))), dim=1)
    q_labels = rng.integers(0, 300, 500)
    noise = torch.as_tensor(rng.normal(size=(500, 32)))
    queries = torch.nn.functional.normalize(gallery[q_labels] + 0.3 * noise)
    metrics = retrieval_metrics(queries, q_labels, gallery, np.arange(300), ks=(1, 5, 10, 50))
    assert 0.0 < metrics["cmc"][1] < metrics["cmc"][50] < 1.0
    assert metrics["cmc_all_shots"] == metrics["cmc"]


def test_a_query_without_relevant_gallery_item_is_an_error() -> None:
    gallery = np.eye(3)
    with pytest.raises(ValueError, match="2 of 3 queries have no relevant gallery item"):
        retrieval_metrics(np.eye(3), [0, 5, 6], gallery, [0, 1, 2])
    with pytest.raises(ValueError, match="1 of 1 queries"):
        retrieval_metrics(np.eye(3)[:1], [0], np.zeros((0, 3)), np.zeros(0, dtype=int))


@pytest.mark.parametrize(
    ("queries", "q_labels", "gallery", "g_labels", "ks", "message"),
    [
        (np.eye(3), [0, 1, 2], np.eye(4), [0, 1, 2, 3], (1,), "same D"),
        (np.eye(3)[:0], [], np.eye(3), [0, 1, 2], (1,), "no queries"),
        (np.eye(3), [0, 1], np.eye(3), [0, 1, 2], (1,), r"query_labels must have shape \(3,\)"),
        (np.eye(3), [0, 1, 2], np.eye(3), [[0, 1, 2]], (1,), "gallery_labels must have shape"),
        (np.eye(3), [0, 1, 2], np.eye(3), [0, 1, 2], (0, 1), "positive"),
        (np.full((3, 3), np.nan), [0, 1, 2], np.eye(3), [0, 1, 2], (1,), "NaN"),
    ],
)
def test_refuses_malformed_inputs(queries, q_labels, gallery, g_labels, ks, message) -> None:
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(queries, q_labels, gallery, g_labels, ks=ks)


def stable_sort_ranks(
    queries: torch.Tensor, q_labels: torch.Tensor, gallery: torch.Tensor, g_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What evaluate._relevant_ranks returns for one chunk holding every query, by brute force: a
    stable descending sort of each query's float32 similarities (equal ones keep gallery order)."""
    similarity = queries @ gallery.T  # the very product relevant_ranks passes on
    order = torch.sort(similarity, dim=1, descending=True, stable=True).indices
    rank_of = torch.empty_like(order)
    rank_of.scatter_(1, order, torch.arange(len(gallery)).expand_as(order))
    relevant = q_labels[:, None] == g_labels[None, :]
    n_relevant = relevant.sum(1)
    # Each query's relevant ranks, worst first, queries in order.
    ranks = torch.where(relevant, rank_of, -1).sort(dim=1, descending=True).values
    t = torch.arange(len(gallery)).expand_as(ranks)
    real = t < n_relevant[:, None]
    n_rel = n_relevant[:, None].expand_as(ranks)
    return ranks[real], (n_rel - t)[real], n_rel[real]


def relevant_ranks(queries, q_labels, gallery, g_labels):
    n_relevant = evaluate._count_relevant(q_labels, g_labels)
    pairs = evaluate.matching_pairs(q_labels, evaluate.label_index(g_labels))
    return evaluate._relevant_ranks(queries @ gallery.T, pairs, n_relevant)


# Force each way of counting: search only the candidates, or every item.
EITHER_SEARCH = pytest.mark.parametrize("dense_fraction", [1.0, 0.0], ids=["candidates", "every"])


@EITHER_SEARCH
@pytest.mark.parametrize(
    ("seed", "n_queries", "n_gallery", "n_identities", "flip"),
    [
        (10, 60, 80, 20, 0.25),
        (11, 40, 120, 3, 0.4),  # dozens of relevant items: most items are candidates
        (12, 50, 50, 10, 0.0),  # identical embeddings per identity: ties everywhere
        (13, 30, 300, 30, 0.5),  # embeddings unrelated to identity
        (14, 80, 200, 100, 0.1),  # few candidates
    ],
)
def test_ranks_equal_a_stable_sort(
    seed, n_queries, n_gallery, n_identities, flip, dense_fraction, monkeypatch
) -> None:
    """Exact integer ranks, ties by gallery index, against sorting every row."""
    monkeypatch.setattr(evaluate, "_DENSE_FRACTION", dense_fraction)
    arrays = dyadic_cohort(seed, n_queries, n_gallery, n_identities, flip)
    queries, q_labels, gallery, g_labels = (torch.as_tensor(a) for a in arrays)
    actual = relevant_ranks(queries, q_labels, gallery, g_labels)
    expected = stable_sort_ranks(queries, q_labels, gallery, g_labels)
    for got, want in zip(actual, expected, strict=True):
        assert torch.equal(got, want)


@EITHER_SEARCH
def test_ranks_with_signed_zero_and_negative_similarities(dense_fraction, monkeypatch) -> None:
    """Similarities of -0.0 and +0.0 tie (lower gallery index first); negative ones rank below."""
    monkeypatch.setattr(evaluate, "_DENSE_FRACTION", dense_fraction)
    queries = torch.tensor([[-1.0], [1.0], [-1.0], [2.0]])
    gallery = torch.tensor([[0.0], [-0.0], [1.0], [0.0], [-0.0], [-1.0], [0.0]])
    assert torch.signbit(queries @ gallery.T)[0].tolist() == [1, 0, 1, 1, 0, 0, 1]  # -0.0 and +0.0
    g_labels = torch.tensor([0, 1, 0, 1, 2, 2, 1])
    for q_labels in ([0, 1, 2, 0], [1, 0, 1, 2], [2, 2, 0, 1]):
        q_labels = torch.tensor(q_labels)
        actual = relevant_ranks(queries, q_labels, gallery, g_labels)
        expected = stable_sort_ranks(queries, q_labels, gallery, g_labels)
        for got, want in zip(actual, expected, strict=True):
            assert torch.equal(got, want)


def test_random_cohorts_against_the_reference() -> None:
    """Many small tied cohorts, ranks 1..20 as `radmatch evaluate` asks, in chunks of 7 queries
    ranked a few chunks at a time: the same numbers to the last bit however many are."""
    for seed in range(20, 30):
        rng = np.random.default_rng(seed)
        n_gallery = int(rng.integers(10, 60))
        arrays = dyadic_cohort(
            seed, int(rng.integers(1, 40)), n_gallery, int(rng.integers(1, n_gallery)), 0.3
        )
        expected = reference_metrics(*arrays, ks=tuple(range(1, 21)))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(evaluate, "_CHUNK_ELEMENTS", 7 * n_gallery)
            found = retrieval_metrics(*arrays, ks=range(1, 21))
            assert_metrics_equal(found, expected)
            for chunks_per_block in (1, 3):
                patch.setattr(evaluate, "_BLOCK_ELEMENTS", 7 * n_gallery * chunks_per_block)
                for dense_fraction in (1.0, 0.0):
                    patch.setattr(evaluate, "_DENSE_FRACTION", dense_fraction)
                    assert retrieval_metrics(*arrays, ks=range(1, 21)) == found
