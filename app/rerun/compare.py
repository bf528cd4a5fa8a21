"""Comparing a re-run's answer with the stored one: every difference, with its cause, in the
stored ranking's order."""

from __future__ import annotations

from collections.abc import Sequence

from app.rerun.causes import Cause, Change, Difference
from app.rerun.context import Context
from app.rerun.membership import (
    explain_added,
    explain_removed,
    explain_shifted_in,
    explain_shifted_out,
)
from app.rerun.movement import explain_images, explain_rank, explain_similarity
from app.search.answer import Candidate, SearchAnswer
from app.storage.tables import ModelVersion


def compare(
    original: Sequence[Candidate], rerun_: Sequence[Candidate], context: Context
) -> list[Difference]:
    """Every difference between the stored candidates and a re-run's, with its cause, in the
    stored ranking's order (people the stored answer lacks last)."""
    before = {c.person_id: c for c in original}
    after = {c.person_id: c for c in rerun_}
    removed = {p: explain_removed(c, rerun_, context) for p, c in before.items() if p not in after}
    added = {p: explain_added(c, original, context) for p, c in after.items() if p not in before}
    changed = {
        p: d
        for p, c in before.items()
        if p in after and (d := explain_similarity(c, after[p], context)) is not None
    }
    explain_shifted_out(removed, {**added, **changed}, original, rerun_, context)
    explain_shifted_in(added, removed, original, context)
    own = {**removed, **added, **changed}
    ranks = {
        p: d
        for p, c in before.items()
        if p in after
        and c.rank != after[p].rank
        and (d := explain_rank(c, after[p], original, rerun_, own, context)) is not None
    }
    images = {}
    if not context.now:
        images = {
            p: d
            for p, c in before.items()
            if p in after and p not in changed and (d := explain_images(c, after[p], context))
        }
    differences = []
    for person_id in before:
        for group in (removed, ranks, changed, images):
            if person_id in group:
                differences.append(group[person_id])
    differences += [added[p] for p in after if p in added]
    return differences


def max_similarity_difference(
    original: Sequence[Candidate], rerun_: Sequence[Candidate]
) -> float | None:
    """The largest change of a person's similarity to the same best image."""
    after = {c.person_id: c for c in rerun_}
    gaps = [
        abs(c.similarity - after[c.person_id].similarity)
        for c in original
        if c.person_id in after and c.best_image_id == after[c.person_id].best_image_id
    ]
    return max(gaps) if gaps else None


def size_difference(stored: SearchAnswer, version: ModelVersion, size: int) -> Difference:
    return Difference(
        Change.INDEX_SIZE,
        Cause.UNEXPLAINED,
        f"the stored search saw {stored.index_size} images at generation "
        f"{stored.index_generation}, but the database holds {size} embeddings of model version "
        f"{version.id} live at that generation",
    )
