"""Re-running a stored search: is its answer reproducible, and what has changed since?

At the original state: the stored query original, embedded with the model version the search
used, ranked exactly over that version's embeddings as the search's index generation contained
them, with the same k, filters and pixel spacing, over the gallery as it was when the search was
recorded (images deleted since still count). The answer should be the stored one: the same people
at the same ranks, with similarities within 1e-5, or within what floating-point rounding explains
between the device and precision the search recorded and the re-run's. Every difference is listed
with its cause; one that nothing explains is reported as unexplained. That would be a bug, and
the answer says so rather than hide it.

Now: the same query with the model this server serves, ranked exactly over today's gallery, each
difference from the stored answer explained by what happened since: people and images added or
deleted, another active model, a record edited, or the approximate index that answered then.

Nothing is stored but an audit entry: a re-run is not a new search. (replay.py runs the search
again; compare.py, membership.py and movement.py explain each difference; words.py words them.)
"""

from __future__ import annotations

from typing import Any

from app.audit.entries import record_entry
from app.core.errors import NotFound
from app.rerun.answer import RerunAnswer, RerunPart
from app.rerun.causes import Cause, Change, Difference
from app.rerun.compare import compare, max_similarity_difference, size_difference
from app.rerun.context import Context
from app.rerun.evidence import RerunEvidence, evidence_identical, weigh_replay
from app.rerun.gallery import Gallery, load_gallery
from app.rerun.replay import Replay, replay, rounding
from app.rerun.words import model_change
from app.search.answer import ModelVersionRef, SearchAnswer
from app.serving.matcher import Matcher
from app.storage.records import Records
from app.storage.tables import ModelVersion, Search, utcnow
from model.inference import EmbeddingModel


def rerun(*, records: Records, matcher: Matcher, search_id: int, key_id: int | None) -> RerunAnswer:
    with records.sessions() as session:
        record = session.get(Search, search_id)
        if record is None:
            raise NotFound(f"no search with id {search_id}")
        version = session.get(ModelVersion, record.model_version_id)
    replayed = replay(records, matcher, record=record, version=version)
    stored = SearchAnswer.from_json(record.response)
    with records.sessions() as session:
        gallery = load_gallery(
            session,
            record,
            stored.candidates + replayed.then.candidates + replayed.now.candidates,
        )
    weighed = weigh_replay(records, record, stored, replayed)
    at_original = _at_original(stored, replayed, gallery, version, weighed)
    answer = RerunAnswer(
        search_id=record.id,
        rerun_at=utcnow().isoformat(),
        query_sha256=record.query_sha256,
        model_version=stored.model_version,
        inference=stored.inference,
        rerun_inference=replayed.then_model.inference,
        index_generation=record.index_generation,
        index=stored.index,
        parameters=record.parameters,
        at_original=at_original,
        now=_now(stored, replayed, gallery, version, at_original, weighed),
        now_model_version=ModelVersionRef(replayed.now_version.id, replayed.now_version.sha256),
        now_index_generation=replayed.now.index_generation,
    )
    _audit(records, answer, key_id)
    return answer


def _context(
    stored: SearchAnswer, replayed: Replay, gallery: Gallery, model: EmbeddingModel, **now: Any
) -> Context:
    query = replayed.query
    drift, rounding_words = rounding(stored.inference, model.inference)
    return Context(query.k, query.filters, stored.index, drift, rounding_words, gallery, **now)


def _at_original(
    stored: SearchAnswer,
    replayed: Replay,
    gallery: Gallery,
    version: ModelVersion,
    weighed: RerunEvidence,
) -> RerunPart:
    context = _context(stored, replayed, gallery, replayed.then_model)
    then = replayed.then
    differences = compare(stored.candidates, then.candidates, context)
    if then.index_size != stored.index_size:
        differences.insert(0, size_difference(stored, version, then.index_size))
    return RerunPart(
        weighed.then.candidates,
        tuple(differences),
        then.index_size,
        max_similarity_difference(stored.candidates, then.candidates),
        weighed.then.open_set,
        evidence_identical(stored, weighed.then),
    )


def _now(
    stored: SearchAnswer,
    replayed: Replay,
    gallery: Gallery,
    version: ModelVersion,
    at_original: RerunPart,
    weighed: RerunEvidence,
) -> RerunPart:
    """Against today's gallery and model; what the original state already explains is inherited."""
    context = _context(
        stored,
        replayed,
        gallery,
        replayed.now_model,
        now=True,
        model_change=model_change(version, replayed.now_version),
        at_original={(d.change, d.person_id): d for d in at_original.differences if d.explained},
    )
    now = replayed.now
    differences = compare(stored.candidates, now.candidates, context)
    if context.model_change is not None:
        differences.insert(0, Difference(Change.MODEL, Cause.MODEL, context.model_change))
    return RerunPart(
        weighed.now.candidates,
        tuple(differences),
        now.index_size,
        max_similarity_difference(stored.candidates, now.candidates),
        weighed.now.open_set,
        evidence_identical(stored, weighed.now),
    )


def _audit(records: Records, answer: RerunAnswer, key_id: int | None) -> None:
    with records.sessions.begin() as session:
        record_entry(
            session,
            action="search.rerun",
            target_type="search",
            target_id=answer.search_id,
            details={
                "identical": answer.at_original.identical,
                "unexplained": answer.at_original.unexplained,
                "now_identical": answer.now.identical,
                "now_unexplained": answer.now.unexplained,
                "now_model_version": answer.now_model_version.id,
                "now_index_generation": answer.now_index_generation,
            },
            key_id=key_id,
        )
