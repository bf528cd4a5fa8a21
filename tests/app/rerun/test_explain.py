"""The re-run's explanations on plain data, without a server or database: answers built by hand,
a gallery of unsaved rows, and what `compare` says caused each difference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.rerun.causes import Cause, Change
from app.rerun.compare import compare, max_similarity_difference
from app.rerun.context import Context
from app.rerun.gallery import Gallery
from app.rerun.replay import DRIFT_CPU_FP32, DRIFT_GPU_OR_BF16, DRIFT_INT8, rounding
from app.rerun.words import approximate, model_change, when
from app.search.answer import Candidate, ImageMatch
from app.search.filters import SearchFilters
from app.storage.tables import Image, ModelVersion, Person

SEARCHED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BEFORE = SEARCHED_AT - timedelta(days=30)
AFTER = SEARCHED_AT + timedelta(days=30)
EXACT_INDEX = {"kind": "flat", "exact": True, "parameters": {}}


def candidate(rank: int, person_id: int, *matches: tuple[int, float]) -> Candidate:
    images = tuple(ImageMatch.of(image_id, similarity) for image_id, similarity in matches)
    return Candidate(
        rank=rank,
        person_id=person_id,
        external_ref=f"P{person_id}",
        similarity=images[0].similarity,
        distance=images[0].distance,
        images=images,
    )


def gallery(
    people: dict[int, list[int]],
    *,
    person_created: dict[int, datetime] | None = None,
    person_deleted: dict[int, datetime] | None = None,
    image_deleted: dict[int, datetime] | None = None,
    reasons: dict[tuple[str, int], str] | None = None,
) -> Gallery:
    """People (id -> image ids), all in the gallery well before the search unless said."""
    person_rows = {
        p: Person(
            id=p,
            external_ref=f"P{p}",
            sex="F",
            created_at=(person_created or {}).get(p, BEFORE),
            deleted_at=(person_deleted or {}).get(p),
        )
        for p in people
    }
    image_rows = {
        i: Image(
            id=i,
            person_id=p,
            uploaded_at=BEFORE,
            deleted_at=(image_deleted or {}).get(i),
            body_part="KNEE",
            side="L",
        )
        for p, ids in people.items()
        for i in ids
    }
    return Gallery(
        searched_at=SEARCHED_AT,
        generation=10,
        people=person_rows,
        images=image_rows,
        images_of={p: [image_rows[i] for i in ids] for p, ids in people.items()},
        added_generation={i: 1 for i in image_rows},
        reasons=reasons or {},
        edited={},
    )


def context(facts: Gallery, **options) -> Context:
    drift, words = rounding(
        {"device": "cpu", "precision": "fp32"}, {"device": "cpu", "precision": "fp32"}
    )
    return Context(
        options.pop("k", 3),
        options.pop("filters", SearchFilters()),
        options.pop("index", EXACT_INDEX),
        drift,
        words,
        facts,
        **options,
    )


def test_the_same_answer_has_no_differences():
    answer = [candidate(1, 1, (10, 0.9)), candidate(2, 2, (20, 0.8))]
    facts = gallery({1: [10], 2: [20]})
    assert compare(answer, list(answer), context(facts)) == []
    assert max_similarity_difference(answer, answer) == 0.0


@pytest.mark.parametrize(
    ("moved_by", "cause"),
    [(5e-5, Cause.DRIFT), (0.01, Cause.UNEXPLAINED)],
    ids=["within-rounding", "beyond-rounding"],
)
def test_a_similarity_that_moved_is_rounding_only_within_the_drift(moved_by, cause):
    stored = [candidate(1, 1, (10, 0.9))]
    rerun = [candidate(1, 1, (10, 0.9 - moved_by))]
    [difference] = compare(stored, rerun, context(gallery({1: [10]})))
    assert difference.change == Change.SIMILARITY
    assert difference.cause == cause
    assert difference.explained == (cause != Cause.UNEXPLAINED)
    assert max_similarity_difference(stored, rerun) == pytest.approx(moved_by)


def test_an_image_deleted_while_the_search_ran_is_left_out_at_the_original_state():
    stored = [candidate(1, 1, (10, 0.9)), candidate(2, 2, (20, 0.8))]
    rerun = [candidate(1, 2, (20, 0.8))]
    facts = gallery({1: [10], 2: [20]}, image_deleted={10: SEARCHED_AT - timedelta(seconds=1)})
    differences = compare(stored, rerun, context(facts))
    by_change = {(d.change, d.person_id): d for d in differences}
    assert by_change[(Change.REMOVED, 1)].cause == Cause.DELETED_DURING
    # Person 2 moved up because person 1 left for that reason.
    assert by_change[(Change.RANK, 2)].cause == Cause.SHIFT
    assert all(d.explained for d in differences)


def test_now_a_person_deleted_since_the_search_is_named_with_the_reason():
    stored = [candidate(1, 1, (10, 0.9)), candidate(2, 2, (20, 0.8))]
    rerun = [candidate(1, 2, (20, 0.8))]
    facts = gallery(
        {1: [10], 2: [20]},
        person_deleted={1: AFTER},
        image_deleted={10: AFTER},
        reasons={("person", 1): "duplicate record"},
    )
    differences = compare(stored, rerun, context(facts, now=True))
    removed = next(d for d in differences if d.change == Change.REMOVED)
    assert removed.cause == Cause.DELETED_SINCE
    assert "reason: duplicate record" in removed.explanation
    assert when(AFTER) in removed.explanation


def test_now_a_person_added_since_the_search_is_explained():
    stored = [candidate(1, 1, (10, 0.8))]
    rerun = [candidate(1, 3, (30, 0.95)), candidate(2, 1, (10, 0.8))]
    facts = gallery({1: [10], 3: [30]}, person_created={3: AFTER})
    differences = compare(stored, rerun, context(facts, now=True))
    by_change = {(d.change, d.person_id): d for d in differences}
    assert by_change[(Change.ADDED, 3)].cause == Cause.ADDED_SINCE
    assert by_change[(Change.RANK, 1)].cause == Cause.SHIFT


def test_differences_nothing_else_explains_are_put_down_to_a_changed_model():
    stored = [candidate(1, 1, (10, 0.9)), candidate(2, 2, (20, 0.8))]
    rerun = [candidate(1, 2, (20, 0.7)), candidate(2, 1, (10, 0.6))]
    facts = gallery({1: [10], 2: [20]})
    changed = context(facts, now=True, model_change="the active model changed")
    differences = compare(stored, rerun, changed)
    assert all(d.explained for d in differences)
    # Similarities moved because the model did; ranks moved because those people moved.
    causes = {(d.change, d.cause) for d in differences}
    assert causes == {(Change.SIMILARITY, Cause.MODEL), (Change.RANK, Cause.SHIFT)}
    unchanged = context(facts, now=True)
    assert Cause.UNEXPLAINED in {d.cause for d in compare(stored, rerun, unchanged)}


def test_two_people_with_equal_similarity_may_swap_as_a_tie():
    stored = [candidate(1, 1, (10, 0.8)), candidate(2, 2, (20, 0.8))]
    rerun = [candidate(1, 2, (20, 0.8)), candidate(2, 1, (10, 0.8))]
    differences = compare(stored, rerun, context(gallery({1: [10], 2: [20]})))
    assert [d.change for d in differences] == [Change.RANK, Change.RANK]
    assert {d.cause for d in differences} == {Cause.TIE}


def test_a_person_an_approximate_index_missed_is_found_by_the_exact_scan():
    hnsw = {"kind": "hnsw", "exact": False, "parameters": {"m": 32, "ef_search": 256}}
    stored = [candidate(1, 1, (10, 0.9))]
    rerun = [candidate(1, 1, (10, 0.9)), candidate(2, 2, (20, 0.85))]
    [difference] = compare(stored, rerun, context(gallery({1: [10], 2: [20]}), index=hnsw))
    assert (difference.change, difference.cause) == (Change.ADDED, Cause.APPROXIMATE)
    assert approximate(hnsw, rerun[1]) in difference.explanation
    assert "ef_search=256, m=32" in difference.explanation


def test_someone_who_no_longer_matches_the_filters_left_for_that_reason():
    stored = [candidate(1, 1, (10, 0.9)), candidate(2, 2, (20, 0.8))]
    rerun = [candidate(1, 2, (20, 0.8))]
    facts = gallery({1: [10], 2: [20]})
    facts.people[1].sex = "M"  # edited after the search; the search asked for women
    differences = compare(stored, rerun, context(facts, filters=SearchFilters(sex="F")))
    removed = next(d for d in differences if d.change == Change.REMOVED)
    assert removed.cause == Cause.FILTERS
    assert "sex=F" in removed.explanation


@pytest.mark.parametrize(
    ("stored", "rerun", "drift", "says"),
    [
        (
            {"device": "cpu", "precision": "fp32"},
            {"device": "cpu", "precision": "fp32"},
            DRIFT_CPU_FP32,
            "the stored search embedded it on cpu in fp32 by torch, the re-run on cpu in fp32 "
            "by torch",
        ),
        (
            {"device": "cuda", "precision": "bf16"},
            {"device": "cpu", "precision": "fp32"},
            DRIFT_GPU_OR_BF16,
            "the stored search embedded it on cuda in bf16",
        ),
        (
            None,
            {"device": "cpu", "precision": "fp32"},
            DRIFT_CPU_FP32,
            "the stored search does not say how it did",
        ),
        (
            {"device": "cpu", "precision": "fp32", "backend": "onnxruntime"},
            {"device": "cpu", "precision": "fp32", "backend": "torch"},
            DRIFT_CPU_FP32,
            "the stored search embedded it on cpu in fp32 by onnxruntime, the re-run on cpu in "
            "fp32 by torch",
        ),
        (
            {"device": "cpu", "precision": "int8", "backend": "onnxruntime"},
            {"device": "cpu", "precision": "fp32", "backend": "onnxruntime"},
            DRIFT_INT8,
            "the stored search embedded it on cpu in int8 by onnxruntime, the re-run on cpu in "
            "fp32 by onnxruntime",
        ),
    ],
    ids=["cpu-both", "gpu-then", "not-recorded", "other-backend", "int8-then"],
)
def test_rounding_allowed_depends_on_how_both_runs_embedded(stored, rerun, drift, says):
    allowed, words = rounding(stored, rerun)
    assert allowed == drift
    assert says in words


def test_a_model_change_is_worded_only_when_the_model_changed():
    then = ModelVersion(id=1, sha256="a" * 64)
    now = ModelVersion(id=2, sha256="b" * 64, activated_at=AFTER)
    assert model_change(then, then) is None
    words = model_change(then, now)
    assert "model version 1" in words and "model version 2" in words
    assert when(AFTER) in words
