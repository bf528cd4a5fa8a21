"""A re-run's answer: the stored search re-run exactly at its original state and against today's,
each part with its candidates and every difference from the stored answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from app.evidence.open_set import OpenSet
from app.rerun.causes import Difference
from app.search.answer import Candidate, ModelVersionRef


@dataclass(frozen=True)
class RerunPart:
    candidates: tuple[Candidate, ...]
    differences: tuple[Difference, ...]
    index_size: int
    # The largest change of a person's similarity to the same best image.
    max_similarity_difference: float | None
    open_set: OpenSet | None = None
    # The candidates' evidence and the open-set answer exactly as stored; None where the stored
    # search carried no evidence.
    evidence_identical: bool | None = None

    @property
    def identical(self) -> bool:
        return not self.differences

    @property
    def unexplained(self) -> int:
        return sum(not d.explained for d in self.differences)

    def as_json(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "exact": True,  # re-runs scan every image
            "index_size": self.index_size,
            "candidates": [c.as_json() for c in self.candidates],
            "max_similarity_difference": self.max_similarity_difference,
            "unexplained": self.unexplained,
            "differences": [d.as_json() for d in self.differences],
            "open_set": None if self.open_set is None else self.open_set.as_json(),
            "evidence_identical": self.evidence_identical,
        }


@dataclass(frozen=True)
class RerunAnswer:
    search_id: int
    rerun_at: str
    query_sha256: str
    model_version: ModelVersionRef  # the stored search's
    inference: dict[str, str] | None  # how the stored search embedded its query, where recorded
    rerun_inference: dict[str, str]
    index_generation: int  # the stored search's
    index: dict[str, Any]  # the index that answered the stored search
    parameters: dict[str, Any]
    at_original: RerunPart
    now: RerunPart
    now_model_version: ModelVersionRef
    now_index_generation: int

    def as_json(self) -> dict[str, Any]:
        fields = {
            name: value
            for name, value in asdict(self).items()
            if name not in ("at_original", "now", "now_model_version", "now_index_generation")
        }
        now = {
            "model_version": asdict(self.now_model_version),
            "index_generation": self.now_index_generation,
        }
        return fields | {
            "at_original": self.at_original.as_json(),
            "now": self.now.as_json() | now,
        }
