"""Request and response bodies, as OpenAPI documents them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Sex = Literal["F", "M", "X"]
Item = TypeVar("Item")
Side = Literal["L", "R"]

# Ids are INTEGER primary keys, 32-bit on PostgreSQL: an id outside 1..MAX_ROW_ID names nothing,
# and the database would fail on it instead of finding nothing.
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]


def _without_nul(text: str | None) -> str | None:
    if text is not None and "\x00" in text:
        raise ValueError("text may not contain the NUL character (\\u0000)")
    return text


# Text from clients: PostgreSQL cannot store the NUL character, so no field accepts it (on SQLite
# too, so that both databases take the same requests). Optional text is Annotated[str | None,
# NoNul], which keeps the length constraints' own messages.
NoNul = AfterValidator(_without_nul)
Text = Annotated[str, NoNul]
OptionalText = Annotated[str | None, NoNul]


class Page(BaseModel, Generic[Item]):
    """One page of a listing (app.api.paging)."""

    items: list[Item]
    total: int
    limit: int
    offset: int


class PersonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_ref: Text = Field(
        min_length=1, max_length=200, description="A missing-person, case or record number"
    )
    sex: Sex | None = None
    birth_year: int | None = Field(default=None, ge=1850, le=2100)
    notes: OptionalText = Field(default=None, max_length=10_000)


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


class Inference(BaseModel):
    device: str = Field(description="cpu or cuda")
    precision: Literal["fp32", "bf16"]


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
    inference: Inference | None = Field(
        default=None,
        description="How the query was embedded (absent on searches stored before it was recorded)",
    )
    index_generation: int
    index_size: int
    index: IndexUsed = Field(
        default_factory=IndexUsed,
        description="The index that answered (searches stored before "
        "approximate indexes existed were all exact)",
    )
    parameters: dict[str, Any]
    candidates: list[Candidate]


class RerunDifference(BaseModel):
    change: Literal["added", "removed", "rank", "similarity", "images", "index_size", "model"] = (
        Field(description="What differs from the stored answer")
    )
    cause: Literal[
        "approximate_index",
        "tie",
        "float_drift",
        "deleted_during_search",
        "added_since",
        "deleted_since",
        "model_changed",
        "filter_attributes_changed",
        "rank_shift",
        "unexplained",
    ]
    explained: bool = Field(description="False: nothing accounts for it, which is a bug to report")
    explanation: str = Field(description="The difference and its cause, in words")
    person_id: int | None = None
    external_ref: str | None = None
    original_rank: int | None = Field(default=None, description="In the stored answer")
    rank: int | None = Field(default=None, description="In the re-run")
    original_similarity: float | None = None
    similarity: float | None = None


class RerunPart(BaseModel):
    identical: bool = Field(
        description="The same people at the same ranks, similarities within 1e-5, same images"
    )
    exact: bool = Field(default=True, description="Re-runs scan every image (a flat index)")
    index_size: int = Field(description="Images the re-run searched")
    candidates: list[Candidate]
    max_similarity_difference: float | None = Field(
        description="The largest change of a person's similarity to the same best image"
    )
    unexplained: int = Field(description="Differences nothing accounts for")
    differences: list[RerunDifference]


class RerunNow(RerunPart):
    model_version: ModelVersionRef = Field(description="The model this server serves now")
    index_generation: int = Field(description="The active model's generation searched now")


class RerunOut(BaseModel):
    """A stored search re-run at the model version and index generation it used, and against
    today's model and gallery, each compared with the stored answer."""

    search_id: int
    rerun_at: str
    query_sha256: str
    model_version: ModelVersionRef = Field(description="The stored search's model version")
    inference: Inference | None = Field(
        default=None, description="How the stored search embedded its query, where recorded"
    )
    rerun_inference: Inference = Field(description="How this re-run embedded the query")
    index_generation: int = Field(description="The stored search's index generation")
    index: IndexUsed = Field(description="The index that answered the stored search")
    parameters: dict[str, Any]
    at_original: RerunPart = Field(
        description="Exact, with the search's model over the gallery at its generation"
    )
    now: RerunNow = Field(description="Exact, with today's model over today's gallery")


class Deleted(BaseModel):
    id: int
    deleted_at: datetime
    purged: bool


class Problem(BaseModel):
    detail: str


class FieldError(BaseModel):
    """One field that failed the request's validation."""

    loc: list[str | int]
    msg: str
    type: str


class Invalid(BaseModel):
    detail: str | list[FieldError] = Field(
        description="The fields that failed validation, or why the service refused what they say"
    )


REFUSALS = {
    400: "The request body could not be parsed",
    401: "No API key, or one that is not valid or was revoked",
    403: "This needs an admin key",
    404: "No such record, or it was deleted",
    409: "It conflicts with what is stored",
    410: "The stored file was purged",
    413: "The file, or its image, is over the service's limits (GET /api/v1/limits)",
    415: "Not a file format the service reads (DICOM, PNG, JPEG or TIFF)",
    422: "The request is not valid",
    503: "The case database is unavailable, or no model is active; try again later",
}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of the refusals a route can answer with: JSON with a `detail`."""
    return {
        status: {"model": Invalid if status == 422 else Problem, "description": REFUSALS[status]}
        for status in statuses
    }


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
    manifest: OptionalText = Field(
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

    checkpoint_path: Text = Field(
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

    number: Text = Field(min_length=1, max_length=100, description="The lab's case number")
    description: Text = Field(default="", max_length=10_000)


class CaseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: CaseStatus | None = None
    description: OptionalText = Field(default=None, max_length=10_000)


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

    search_id: RowId
    person_id: RowId = Field(description="The candidate the conclusion is about")
    conclusion: ConclusionScale
    comment: Text = Field(default="", max_length=10_000)


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

    search_id: RowId
    reviewer_key_id: RowId = Field(description="The second examiner's key (GET /examiners)")


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
