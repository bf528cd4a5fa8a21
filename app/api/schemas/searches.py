"""Searches and their re-runs."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.rerun.causes import Cause, Change


class ImageMatch(BaseModel):
    image_id: int
    similarity: float = Field(description="Cosine similarity of the unit embeddings")
    distance: float = Field(description="Euclidean distance between the unit embeddings")


class Evidence(BaseModel):
    """How much more probable the similarity is if the query and the candidate are the same
    person than if they are different people."""

    log10_lr: float = Field(description="log10 of the likelihood ratio, within the ELUB bounds")
    lr: float = Field(description="The likelihood ratio")
    bounded: bool = Field(description="True where the empirical bounds (ELUB) capped it")
    verbal: Literal[
        "no support",
        "weak",
        "moderate",
        "moderately strong",
        "strong",
        "very strong",
        "extremely strong",
    ] = Field(description="The ENFSI-style verbal scale of the strength")
    supports: Literal["same person", "different people", "neither"]
    years_between: float | None = Field(
        description="Between the query's and the candidate image's dates; null if one is unknown"
    )
    band: str = Field(description="The calibration curve used: an interval band, or pooled")
    elub: list[float] = Field(description="That curve's lower and upper bounds, log10")
    calibration_id: int
    note: str | None = Field(description="Why the pooled calibration was used, where it was")


class Candidate(BaseModel):
    rank: int
    person_id: int
    external_ref: str
    similarity: float = Field(description="The person's best image's cosine similarity")
    distance: float
    images: list[ImageMatch] = Field(description="The person's retrieved images, best first")
    evidence: Evidence | None = Field(
        default=None, description="Null where the model version has no calibration"
    )


class CalibrationRef(BaseModel):
    id: int
    method: Literal["logistic", "kde"]
    model_version_id: int


class OpenSet(BaseModel):
    """Is the person in the searched gallery at all? radmatch never declares an
    identification: that is the examiner's conclusion."""

    prior: float = Field(description="Probability, before the search, that they are")
    prior_source: Literal["request", "case", "default"]
    gallery_people: int = Field(description="The people the search could have returned")
    people_beyond_candidates: int
    beyond_log10_lr: float | None = Field(
        description="Each person not returned counted with this log10 LR, an upper bound"
    )
    p_in_gallery: float
    p_top_candidate: float | None = Field(description="That the first candidate is the person")
    decision: Literal["candidate supported", "inconclusive", "probably not in the gallery"]
    thresholds: dict[str, float]
    statement: str


class ModelVersionRef(BaseModel):
    id: int
    sha256: str


class Inference(BaseModel):
    device: str = Field(description="cpu or cuda")
    precision: Literal["fp32", "bf16", "int8"]
    backend: Literal["torch", "onnxruntime"] = Field(
        default="torch",
        description="What ran the network (torch on searches stored before it was recorded)",
    )
    int8_loss_pp: dict[str, float] | None = Field(
        default=None,
        exclude_if=lambda loss: loss is None,  # sent only as stored: in int8
        description="In int8 only: the percentage points of CMC top-1 and mAP that the model's "
        "int8 file was measured to lose to float32 on test people (`radmatch quantize`; "
        "negative: a gain), as it stood when the query was embedded",
    )


class IndexUsed(BaseModel):
    kind: Literal["flat", "hnsw", "ivf"] = "flat"
    exact: bool = Field(default=True, description="False for an approximate index")
    parameters: dict[str, int] = Field(
        default_factory=dict, description="The approximate index's build and search parameters"
    )


class MaskedCandidate(BaseModel):
    review_id: int
    person_id: int
    external_ref: str
    image_ids: list[int] = Field(description="The person's images, by id (not by similarity)")


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
    calibration: CalibrationRef | None = Field(
        default=None, description="The calibration that weighed the candidates, if any"
    )
    query_date: str | None = Field(
        default=None, description="The query's date (given, or the file's), if known"
    )
    open_set: OpenSet | None = Field(
        default=None, description="Null where the model version has no calibration"
    )
    masked: MaskedCandidate | None = Field(
        default=None,
        description="Set while you review this search with sequential unmasking: the one "
        "candidate you are shown, and no candidates, scores or evidence until you conclude",
    )


class RerunDifference(BaseModel):
    change: Change = Field(description="What differs from the stored answer")
    cause: Cause
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
    open_set: OpenSet | None = Field(default=None, description="The open-set answer re-run")
    evidence_identical: bool | None = Field(
        default=None,
        description="The candidates' evidence and the open-set answer exactly as stored (at "
        "the original state: with the calibration, query date and prior the search recorded); "
        "null where the stored search carried no evidence",
    )


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


class QueryFactsOut(BaseModel):
    """What a search's query radiograph says about itself, for comparing it with a candidate's."""

    format: str = Field(description="dicom, png, jpeg or tiff")
    width: int = Field(description="Of the stored original, in pixels")
    height: int
    side: str | None = Field(description="L or R")
    view: str | None = Field(description="The DICOM view position (AP, PA, LAT, ...)")
    body_part: str | None
    sex: str | None
    pixel_spacing_mm: float | None = Field(description="Column spacing of the original")
    study_date: date | None
    sources: dict[str, Literal["file", "search form"]] = Field(
        description="Where each known fact came from: the file's header or the search form"
    )


class Region(BaseModel):
    x: float
    y: float
    width: float
    height: float


class SimilarityMap(BaseModel):
    map: list[list[float]] = Field(
        description="Rows top to bottom over `region`: each cell's share of the similarity"
    )
    region: Region = Field(description="The square the network saw, in the original's pixels")
    width: int = Field(description="The original's width in pixels")
    height: int


class ExplanationOut(BaseModel):
    search_id: int
    person_id: int
    image_id: int = Field(description="The candidate's image explained")
    similarity: float = Field(description="Recomputed; each map sums to it")
    method: str
    query: SimilarityMap
    candidate: SimilarityMap
