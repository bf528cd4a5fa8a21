"""Request and response bodies, as OpenAPI documents them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Sex = Literal["F", "M", "X"]
Side = Literal["L", "R"]


class PersonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_ref: str = Field(
        min_length=1, max_length=200, description="A missing-person, case or record number"
    )
    sex: Sex | None = None
    birth_year: int | None = Field(default=None, ge=1850, le=2100)
    notes: str | None = Field(default=None, max_length=10_000)


class ImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    person_id: int
    sha256: str
    size_bytes: int
    format: str
    filename: str | None
    body_part: str | None
    side: str | None
    acquisition_date: date | None
    visit_months: float | None
    pixel_spacing_mm: float | None
    uploaded_at: datetime
    uploaded_by_key_id: int | None
    image_metadata: dict[str, Any] = Field(description="What decoding read from the file")


class PersonOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    external_ref: str
    sex: str | None
    birth_year: int | None
    notes: str | None
    created_at: datetime


class PersonDetail(PersonOut):
    images: list[ImageOut]


class PeoplePage(BaseModel):
    items: list[PersonOut]
    total: int
    limit: int
    offset: int


class ImageMatch(BaseModel):
    image_id: int
    similarity: float = Field(description="Cosine similarity of the unit embeddings")
    distance: float = Field(description="Euclidean distance between the unit embeddings")


class Candidate(BaseModel):
    rank: int
    person_id: int
    external_ref: str
    similarity: float = Field(description="The person's best image's cosine similarity")
    distance: float
    images: list[ImageMatch] = Field(description="The person's retrieved images, best first")


class ModelVersionRef(BaseModel):
    id: int
    sha256: str


class SearchOut(BaseModel):
    search_id: int
    created_at: str
    query_sha256: str
    model_version: ModelVersionRef
    index_generation: int
    index_size: int
    parameters: dict[str, Any]
    candidates: list[Candidate]


class Deleted(BaseModel):
    id: int
    deleted_at: datetime
    purged: bool


class Problem(BaseModel):
    detail: str
