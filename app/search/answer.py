"""A search's answer as the domain knows it: the people ranked, each with the images that put them
there, and what answered (model version, index, how the query was embedded). Built by a search
and by a re-run; turned into JSON in one place, for storage and for the HTTP response alike."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from app.evidence.open_set import OpenSet
from app.evidence.weight import Evidence


def distance(similarity: float) -> float:
    """Euclidean distance between unit vectors with this cosine similarity."""
    return math.sqrt(max(0.0, 2.0 - 2.0 * similarity))


@dataclass(frozen=True)
class ImageMatch:
    image_id: int
    similarity: float
    distance: float

    @classmethod
    def of(cls, image_id: int, similarity: float) -> ImageMatch:
        return cls(image_id, similarity, distance(similarity))


@dataclass(frozen=True)
class Candidate:
    """A person in an answer: ranked by their best image, which comes first in `images`."""

    rank: int
    person_id: int
    external_ref: str
    similarity: float
    distance: float
    images: tuple[ImageMatch, ...]
    # None where the model version has no calibration, and on searches stored before evidence.
    evidence: Evidence | None = None

    @property
    def best_image_id(self) -> int:
        return self.images[0].image_id

    @property
    def who(self) -> str:
        return f"{self.external_ref} (person {self.person_id})"

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "images": [asdict(match) for match in self.images],
            "evidence": None if self.evidence is None else self.evidence.as_json(),
        }

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> Candidate:
        images = tuple(ImageMatch(**match) for match in stored["images"])
        evidence = stored.get("evidence")
        return cls(
            **{
                **stored,
                "images": images,
                "evidence": None if evidence is None else Evidence.from_json(evidence),
            }
        )


@dataclass(frozen=True)
class ModelVersionRef:
    id: int
    sha256: str


# Searches stored before approximate indexes existed were all answered by a flat scan.
EXACT_INDEX = {"kind": "flat", "exact": True, "parameters": {}}


@dataclass(frozen=True)
class SearchAnswer:
    """A stored search's answer, exactly as it was sent."""

    search_id: int
    case_id: int | None
    created_at: str
    query_sha256: str
    model_version: ModelVersionRef
    # {device, precision, backend, int8_loss_pp in int8}; None on searches stored before it was
    # recorded.
    inference: dict[str, Any] | None
    index_generation: int
    index_size: int
    index: dict[str, Any]
    parameters: dict[str, Any]
    candidates: tuple[Candidate, ...] = field(default=())
    # {id, method, model_version_id} of the calibration that weighed the candidates, if any.
    calibration: dict[str, Any] | None = None
    query_date: str | None = None  # ISO date the years between images are counted from
    open_set: OpenSet | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "candidates": [c.as_json() for c in self.candidates],
            "open_set": None if self.open_set is None else self.open_set.as_json(),
        }

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> SearchAnswer:
        return cls(
            search_id=stored["search_id"],
            case_id=stored.get("case_id"),
            created_at=stored["created_at"],
            query_sha256=stored["query_sha256"],
            model_version=ModelVersionRef(**stored["model_version"]),
            inference=stored.get("inference"),
            index_generation=stored["index_generation"],
            index_size=stored["index_size"],
            index=EXACT_INDEX | (stored.get("index") or {}),
            parameters=stored["parameters"],
            candidates=tuple(Candidate.from_json(c) for c in stored["candidates"]),
            calibration=stored.get("calibration"),
            query_date=stored.get("query_date"),
            open_set=OpenSet.from_json(stored["open_set"]) if stored.get("open_set") else None,
        )
