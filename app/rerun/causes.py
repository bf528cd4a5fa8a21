"""A difference between a re-run's answer and the stored one, with its cause: what changed, why,
and in words. Every cause but `unexplained` accounts for the difference."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from app.search.answer import Candidate


class Change(StrEnum):
    ADDED = "added"  # a person the stored answer lacks
    REMOVED = "removed"  # a person it had
    RANK = "rank"
    SIMILARITY = "similarity"  # of the person's best image, or another best image
    IMAGES = "images"  # the person's retrieved images
    INDEX_SIZE = "index_size"
    MODEL = "model"


class Cause(StrEnum):
    APPROXIMATE = "approximate_index"
    TIE = "tie"
    DRIFT = "float_drift"
    DELETED_DURING = "deleted_during_search"
    ADDED_SINCE = "added_since"
    DELETED_SINCE = "deleted_since"
    MODEL = "model_changed"
    FILTERS = "filter_attributes_changed"
    SHIFT = "rank_shift"
    UNEXPLAINED = "unexplained"


@dataclass
class Difference:
    """One way an answer differs from the stored one, and why."""

    change: Change
    cause: Cause
    explanation: str
    person_id: int | None = None
    external_ref: str | None = None
    original_rank: int | None = None
    rank: int | None = None
    original_similarity: float | None = None
    similarity: float | None = None

    @property
    def explained(self) -> bool:
        return self.cause != Cause.UNEXPLAINED

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "explained": self.explained}


def unexplained_change(
    change: Change, explanation: str, before: Candidate, after: Candidate
) -> Difference:
    """A change to a person found in both answers, until a cause is found for it."""
    return Difference(
        change,
        Cause.UNEXPLAINED,
        explanation,
        person_id=before.person_id,
        external_ref=before.external_ref,
        original_rank=before.rank,
        rank=after.rank,
        original_similarity=before.similarity,
        similarity=after.similarity,
    )


def because(difference: Difference, cause: Cause, why: str) -> Difference:
    difference.cause = cause
    difference.explanation = f"{difference.explanation}: {why}"
    return difference
