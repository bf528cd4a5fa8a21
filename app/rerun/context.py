"""How to read one comparison of a re-run with the stored answer, and the explanations that
apply to any kind of difference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.rerun.causes import Cause, Change, Difference, because
from app.rerun.gallery import Gallery
from app.search.filters import SearchFilters


@dataclass
class Context:
    """How to read one comparison: the stored search, and what the re-run ran with."""

    k: int
    filters: SearchFilters
    index: dict[str, Any]  # the stored response's index description
    drift: float
    rounding: str  # how the stored search and the re-run embedded the query, in words
    gallery: Gallery
    now: bool = False  # against today's state (else at the original state)
    model_change: str | None = None
    # The explained differences at the original state, by (change, person id): now only.
    at_original: dict[tuple[Change, int], Difference] = field(default_factory=dict)


def as_at_original(difference: Difference, context: Context) -> Difference | None:
    """Now: the difference with the cause the re-run at the original state found for the same
    change to the same person, if it found one."""
    inherited = context.at_original.get((difference.change, difference.person_id))
    if inherited is None:
        return None
    return because(
        difference, inherited.cause, f"as at the original state: {inherited.explanation}"
    )


def unless_model_changed(difference: Difference, context: Context) -> Difference:
    """A difference nothing else explained: the change of model does, if the model changed."""
    if context.model_change is not None:
        return because(difference, Cause.MODEL, "the active model changed (see above)")
    return difference
