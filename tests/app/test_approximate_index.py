"""The approximate index kinds (HNSW and IVF) against the exact flat index, in memory: at high
search effort they give the flat index's answers, removals are tombstones that searches skip and
snapshots keep, filters hold, and the gallery size chooses the kind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.serving.index import VectorIndex
from app.serving.index_options import IndexOptions

DIM = 128
PEOPLE = 500
IMAGES = 2_000  # four images of each person: image i is person i % PEOPLE
VERSION = 1
KINDS = ["hnsw", "ivf"]


def normalised(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def images_of(centres: np.ndarray, people: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """New images of these people: about 0.8 cosine to the person's centre."""
    noise = rng.standard_normal((len(people), DIM)) * (0.75 / np.sqrt(DIM))
    return normalised(centres[people] + noise)


@pytest.fixture(scope="module")
def gallery() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids, unit vectors of the gallery's images, and 20 queries: new images of gallery people."""
    rng = np.random.default_rng(0)
    centres = normalised(rng.standard_normal((PEOPLE, DIM)))
    vectors = images_of(centres, np.arange(IMAGES) % PEOPLE, rng)
    queries = images_of(centres, rng.choice(PEOPLE, size=20, replace=False), rng)
    ids = np.arange(1_000, 1_000 + IMAGES, dtype=np.int64)
    return ids, vectors, queries


def options_for(kind: str) -> IndexOptions:
    """Flat, or approximate from the first image and searching hard enough to be exhaustive (with
    a cheaper graph than the default: the search makes up for it)."""
    if kind == "flat":
        return IndexOptions()
    return IndexOptions(
        approximate_from=0,
        approximate_kind=kind,
        hnsw_ef_construction=40,
        hnsw_ef_search=2_000,
        ivf_nprobe=IndexOptions().ivf_lists_for(IMAGES),
    )


def build(kind: str, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
    return VectorIndex.build(VERSION, DIM, 1, ids, vectors, options_for(kind))


@pytest.fixture(scope="module")
def whole_gallery(gallery, tmp_path_factory) -> Callable[[str], VectorIndex]:
    """A fresh index of the whole gallery, of a kind. Each kind is built once and saved; every
    call loads a copy of its own to change."""
    ids, vectors, _ = gallery
    folder = tmp_path_factory.mktemp("indexes")
    for kind in ["flat", *KINDS]:
        build(kind, ids, vectors).save(folder / f"{kind}.npz")
    return lambda kind: VectorIndex.load(folder / f"{kind}.npz", VERSION, DIM, options_for(kind))


def assert_same_answers(
    index: VectorIndex, exact: VectorIndex, queries: np.ndarray, allowed_ids=None
) -> None:
    for query in queries:
        similarities, ids, _, _ = index.search(query, k=10, allowed_ids=allowed_ids)
        want_similarities, want_ids, _, _ = exact.search(query, k=10, allowed_ids=allowed_ids)
        assert ids.tolist() == want_ids.tolist()
        np.testing.assert_allclose(similarities, want_similarities, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_high_effort_search_returns_the_exact_answers(kind: str, gallery) -> None:
    """Searching enough of the graph or of the lists, the approximate index ranks as a flat scan."""
    ids, vectors, queries = gallery
    exact = build("flat", ids, vectors)
    index = build(kind, ids, vectors)
    assert (exact.kind, exact.exact) == ("flat", True)
    assert (index.kind, index.exact) == (kind, False)
    assert index.size == exact.size == IMAGES
    assert_same_answers(index, exact, queries)
    # The gallery is clustered, not noise: an image's nearest are its own person's images.
    _, found, _, _ = index.search(vectors[0], k=4)
    assert sorted(found.tolist()) == ids[::PEOPLE].tolist()


@pytest.mark.parametrize("kind", KINDS)
def test_description_reports_an_approximate_index_and_its_parameters(
    kind: str, whole_gallery
) -> None:
    lists = IndexOptions().ivf_lists_for(IMAGES)
    parameters = {"m": 32, "ef_search": 2_000} if kind == "hnsw" else {"lists": lists}
    if kind == "ivf":
        parameters["nprobe"] = lists
    assert whole_gallery(kind).description() == {
        "kind": kind,
        "exact": False,
        "parameters": parameters,
    }
    assert whole_gallery("flat").description() == {"kind": "flat", "exact": True, "parameters": {}}


@pytest.mark.parametrize("kind", KINDS)
def test_removals_are_tombstones_that_searches_skip_and_snapshots_keep(
    kind: str, gallery, whole_gallery, tmp_path: Path
) -> None:
    """A removed image must never be shown again, before or after a restart from the snapshot."""
    ids, vectors, queries = gallery
    index = whole_gallery(kind)
    removed = ids[::7]
    index.apply(2, [], None, removed)
    kept = ~np.isin(ids, removed)
    exact = build("flat", ids[kept], vectors[kept])  # what is left, searched exactly

    path = tmp_path / "model-1.npz"
    index.save(path)
    loaded = VectorIndex.load(path, VERSION, DIM, options_for(kind))
    for searched in (index, loaded):
        assert searched.kind == kind
        assert searched.generation == 2
        assert searched.size == exact.size == IMAGES - len(removed)
        assert sorted(searched.ids().tolist()) == ids[kept].tolist()
        # A removed image's own vector would be its best match: it must not come back.
        for vector in vectors[::28]:
            _, found, _, _ = searched.search(vector, k=10)
            assert not np.isin(found, removed).any()
        assert_same_answers(searched, exact, queries)


@pytest.mark.parametrize("kind", KINDS)
def test_allowed_ids_restrict_the_results(kind: str, gallery, whole_gallery) -> None:
    """Filtered searches (by sex, age, ...) show only allowed images, ranked as exactly."""
    ids, vectors, queries = gallery
    index, exact = whole_gallery(kind), whole_gallery("flat")
    allowed = np.random.default_rng(1).choice(ids, size=300, replace=False)
    for query in queries:
        _, found, _, _ = index.search(query, k=10, allowed_ids=allowed)
        assert np.isin(found, allowed).all()
    assert_same_answers(index, exact, queries, allowed_ids=allowed)
    # With only the other images of the query's own person allowed, they are the answer.
    _, found, _, _ = index.search(vectors[0], k=3, allowed_ids=ids[PEOPLE::PEOPLE])
    assert sorted(found.tolist()) == ids[PEOPLE::PEOPLE].tolist()


@pytest.mark.parametrize("kind", KINDS)
def test_tombstones_and_filters_combine(kind: str, gallery, whole_gallery) -> None:
    ids, _, queries = gallery
    index, exact = whole_gallery(kind), whole_gallery("flat")
    removed = ids[:100]
    index.apply(2, [], None, removed)
    exact.apply(2, [], None, removed)
    allowed = ids[50:400]  # half of the first 100 are removed
    for query in queries:
        _, found, _, _ = index.search(query, k=10, allowed_ids=allowed)
        assert np.isin(found, ids[100:400]).all()
    assert_same_answers(index, exact, queries, allowed_ids=allowed)


@pytest.mark.parametrize("kind", KINDS)
def test_gallery_size_chooses_the_kind(kind: str, gallery) -> None:
    ids, vectors, _ = gallery
    options = IndexOptions(approximate_from=200, approximate_kind=kind)
    assert options.kind_for(0) == options.kind_for(199) == "flat"
    assert options.kind_for(200) == options.kind_for(10**7) == kind
    assert VectorIndex.build(VERSION, DIM, 1, ids[:199], vectors[:199], options).kind == "flat"
    assert VectorIndex.build(VERSION, DIM, 1, ids[:200], vectors[:200], options).kind == kind
    assert IndexOptions().kind_for(249_999) == "flat"
    assert IndexOptions().kind_for(250_000) == "hnsw"
