"""The typed answers against the API's schemas: what a search and a re-run send is what the
OpenAPI document promises, and a stored answer reads back as it was written."""

from __future__ import annotations

from app.api.schemas.searches import RerunOut, SearchOut
from app.rerun.answer import RerunAnswer, RerunPart
from app.rerun.causes import Cause, Change, Difference
from app.search.answer import Candidate, ImageMatch, ModelVersionRef, SearchAnswer


def a_candidate() -> Candidate:
    best = ImageMatch.of(7, 0.75)
    return Candidate(
        rank=1,
        person_id=3,
        external_ref="P3",
        similarity=best.similarity,
        distance=best.distance,
        images=(best, ImageMatch.of(8, 0.5)),
    )


def a_search_answer() -> SearchAnswer:
    return SearchAnswer(
        search_id=5,
        case_id=None,
        created_at="2026-03-01T12:00:00+00:00",
        query_sha256="c" * 64,
        model_version=ModelVersionRef(1, "a" * 64),
        inference={"device": "cpu", "precision": "fp32", "backend": "onnxruntime"},
        index_generation=12,
        index_size=40,
        index={"kind": "flat", "exact": True, "parameters": {}},
        parameters={"k": 10, "filters": {}, "pixel_spacing_mm": None},
        candidates=(a_candidate(),),
    )


def test_a_search_answer_reads_back_as_stored_and_fits_the_schema():
    answer = a_search_answer()
    stored = answer.as_json()
    assert SearchAnswer.from_json(stored) == answer
    # As sent, an answer also says whether it is masked, which depends on who asks.
    sent = SearchOut.model_validate(stored).model_dump(mode="json")
    assert sent == stored | {"masked": None}
    assert stored["candidates"][0]["images"][0] == {
        "image_id": 7,
        "similarity": 0.75,
        "distance": a_candidate().distance,
    }


def test_a_search_stored_before_index_and_inference_were_recorded_reads_as_exact():
    stored = a_search_answer().as_json()
    del stored["index"], stored["inference"], stored["case_id"]
    answer = SearchAnswer.from_json(stored)
    assert answer.index == {"kind": "flat", "exact": True, "parameters": {}}
    assert answer.inference is None and answer.case_id is None


def test_a_search_stored_before_the_backend_was_recorded_was_embedded_by_torch():
    stored = a_search_answer().as_json()
    stored["inference"] = {"device": "cpu", "precision": "fp32"}
    sent = SearchOut.model_validate(stored).model_dump(mode="json")
    assert sent["inference"] == {"device": "cpu", "precision": "fp32", "backend": "torch"}


def test_a_rerun_answer_fits_the_schema_with_its_causes():
    difference = Difference(
        Change.SIMILARITY, Cause.DRIFT, "moved by 5e-05", person_id=3, external_ref="P3"
    )
    part = RerunPart((a_candidate(),), (difference,), 40, 5e-5)
    answer = RerunAnswer(
        search_id=5,
        rerun_at="2026-03-02T12:00:00+00:00",
        query_sha256="c" * 64,
        model_version=ModelVersionRef(1, "a" * 64),
        inference=None,
        rerun_inference={"device": "cpu", "precision": "fp32"},
        index_generation=12,
        index={"kind": "flat", "exact": True, "parameters": {}},
        parameters={"k": 10},
        at_original=part,
        now=RerunPart((a_candidate(),), (), 41, 0.0),
        now_model_version=ModelVersionRef(1, "a" * 64),
        now_index_generation=13,
    )
    sent = RerunOut.model_validate(answer.as_json()).model_dump(mode="json")
    assert sent["at_original"]["identical"] is False
    assert sent["at_original"]["differences"][0]["cause"] == "float_drift"
    assert sent["at_original"]["differences"][0]["explained"] is True
    assert sent["now"]["identical"] is True and sent["now"]["unexplained"] == 0
    assert sent["now"]["model_version"] == {"id": 1, "sha256": "a" * 64}
    assert sent["now"]["index_generation"] == 13


def test_the_schema_lists_every_cause_and_change():
    schema = RerunOut.model_json_schema()
    definitions = schema["$defs"]
    assert definitions["Cause"]["enum"] == [cause.value for cause in Cause]
    assert definitions["Change"]["enum"] == [change.value for change in Change]
