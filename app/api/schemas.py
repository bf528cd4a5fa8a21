"""Request and response bodies, as OpenAPI documents them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Sex = Literal["F", "M", "X"]
Item = TypeVar("Item")
Side = Literal["L", "R"]


class Page(BaseModel, Generic[Item]):
    """One page of a listing (app.api.paging)."""

    items: list[Item]
    total: int
    limit: int
    offset: int


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


class PeoplePage(Page[PersonOut]):
    pass


class Appearance(BaseModel):
    search_id: int
    case_id: int | None
    case_number: str | None
    created_at: datetime
    rank: int
    similarity: float


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


class IndexUsed(BaseModel):
    kind: Literal["flat", "hnsw", "ivf"] = "flat"
    exact: bool = Field(default=True, description="False for an approximate index")
    parameters: dict[str, int] = Field(
        default_factory=dict, description="The approximate index's build and search parameters"
    )


class SearchOut(BaseModel):
    search_id: int
    case_id: int | None = Field(default=None, description="The case it was run in, if any")
    created_at: str
    query_sha256: str
    model_version: ModelVersionRef
    index_generation: int
    index_size: int
    index: IndexUsed = Field(
        default_factory=IndexUsed,
        description="The index that answered (searches stored before "
        "approximate indexes existed were all exact)",
    )
    parameters: dict[str, Any]
    candidates: list[Candidate]


class Deleted(BaseModel):
    id: int
    deleted_at: datetime
    purged: bool


class Problem(BaseModel):
    detail: str


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str = Field(description="index_rebuild, model_activation or training")
    status: str = Field(description="queued, running, succeeded, failed or cancelled")
    parameters: dict[str, Any]
    result: dict[str, Any] | None
    progress_done: int
    progress_total: int | None
    progress_message: str
    log_tail: str = Field(description="The job's last log lines")
    error: str | None = Field(description="Why it failed, was cancelled, or was re-queued")
    attempt: int = Field(description="How many times a worker has claimed it")
    max_attempts: int
    worker: str | None = Field(description="host:pid of the worker running it")
    cancel_requested: bool
    created_at: datetime
    created_by_key_id: int | None
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None


class JobsPage(Page[JobOut]):
    pass


class TrainingJobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: Literal["paper", "cpu", "smoke"] = "cpu"
    manifest: str | None = Field(
        default=None,
        max_length=4096,
        description="A cohort manifest the worker can read; omit to train on the case database",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Training options over the preset, as `radmatch train` names them "
        '(for example {"epochs": 10, "loss": "triplet"})',
    )


class ModelRegister(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint_path: str = Field(
        min_length=1, max_length=4096, description="A checkpoint file on the server's disk"
    )


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sha256: str
    checkpoint_path: str
    dimension: int
    metrics: dict[str, Any]
    active: bool
    index_generation: int
    index_build: int
    created_at: datetime
    activated_at: datetime | None
    embedded_images: int = Field(description="Live images with this version's embedding")


CaseStatus = Literal["open", "identified", "closed"]
ConclusionScale = Literal["identification", "probable", "possible", "insufficient", "excluded"]


class CaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=1, max_length=100, description="The lab's case number")
    description: str = Field(default="", max_length=10_000)


class CaseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: CaseStatus | None = None
    description: str | None = Field(default=None, max_length=10_000)


class CaseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    number: str
    description: str
    status: str
    created_at: datetime
    updated_at: datetime


class CasesPage(Page[CaseOut]):
    pass


class ConclusionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    search_id: int
    person_id: int = Field(description="The candidate the conclusion is about")
    conclusion: ConclusionScale
    comment: str = Field(default="", max_length=10_000)


class ConclusionOut(BaseModel):
    id: int
    search_id: int
    person_id: int
    conclusion: str
    comment: str
    key_id: int = Field(description="The key that signed it")
    examiner: str = Field(description="That key's owner")
    created_at: datetime


class Conclusions(BaseModel):
    items: list[ConclusionOut] = Field(description="Oldest first; a change is a later entry")
    hidden: int = Field(description="Others' conclusions withheld until yours (blind review)")
    blind_searches: list[int] = Field(
        description="Searches you review blind and have not concluded on"
    )


class ReviewCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    search_id: int
    reviewer_key_id: int = Field(description="The second examiner's key (GET /examiners)")


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    case_id: int | None = None
    search_id: int
    reviewer_key_id: int
    reviewer: str = Field(description="The reviewing key's owner")
    requested_by_key_id: int
    requested_by: str
    created_at: datetime
    completed_at: datetime | None


class CaseDetail(CaseOut):
    searches: list[SearchOut] = Field(description="Searches run in the case, oldest first")
    conclusions: Conclusions
    reviews: list[ReviewOut]


class Limits(BaseModel):
    max_upload_bytes: int
    max_search_k: int
    max_pixels: int


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: str
