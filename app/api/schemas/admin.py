"""Jobs and model versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas.common import (
    OptionalText,
    Page,
    Text,
)


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str = Field(description="index_rebuild, model_activation, training or calibration")
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


CalibrationMethod = Literal["logistic", "kde"]


class ModelRegister(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint_path: Text = Field(
        min_length=1, max_length=4096, description="A checkpoint file on the server's disk"
    )
    calibration_manifest: OptionalText = Field(
        default=None,
        max_length=4096,
        description="A manifest of people the model was never trained on: a calibration job "
        "fits the version's calibration on them (else the checkpoint's own is used, if any)",
    )
    calibration_method: CalibrationMethod = "logistic"


class CalibrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manifest: Text = Field(
        min_length=1,
        max_length=4096,
        description="A cohort manifest on the server's disk, of people the model was never "
        "trained on",
    )
    method: CalibrationMethod = "logistic"


class CalibrationCurve(BaseModel):
    label: str = Field(description="An interval band of years between the images, or pooled")
    years: list[float | None] | None = Field(description="[from, to) in years; null: pooled")
    elub: list[float] = Field(description="Empirical lower and upper bounds, log10 LR")
    same_pairs: int
    different_pairs: int


class CalibrationOut(BaseModel):
    id: int
    method: CalibrationMethod
    created_at: datetime
    source: dict[str, Any] = Field(description="What it was fitted on")
    curves: list[CalibrationCurve] = Field(description="Pooled first, then each fitted band")


class ValidationOut(BaseModel):
    model_version_id: int
    calibration: CalibrationOut
    report: dict[str, Any] = Field(
        description="Cross-validated over people: cllr, cllr_min, cllr_cal, eer, elub, "
        "misleading-evidence rates, pair counts, and the same per band"
    )
    plots: dict[str, str] = Field(description="Tippett, ECE, PAV and score plots (PNG)")


class Int8Out(BaseModel):
    servable: bool = Field(description="Whether RADMATCH_PRECISION=int8 may serve this version")
    refused: str | None = Field(description="Why not, where it may not")
    loss_pp: dict[str, float] | None = Field(
        description="Percentage points of CMC top-1 and mAP lost from float32 to int8 on test "
        "people, as `radmatch quantize` measured them"
    )
    bound_pp: float = Field(description="The most either may lose")


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sha256: str
    checkpoint_path: str
    dimension: int
    metrics: dict[str, Any]
    active: bool
    index_generation: int = Field(
        description="Changes whenever an image of the version is added or removed: the state of "
        "the gallery its index reflects"
    )
    index_build: int = Field(
        description="How many index builds of the version were published (by a rebuild or its "
        "activation); servers load the newest"
    )
    index_published_at: datetime | None = Field(
        description="When its newest index build was published; null: none yet (servers build "
        "the index from the database at start)"
    )
    index_published_by_job: int | None = Field(description="The job that published it")
    created_at: datetime
    activated_at: datetime | None
    embedded_images: int = Field(description="Live images with this version's embedding")
    calibration: CalibrationOut | None = Field(
        description="The current calibration (similarity to likelihood ratio), if any"
    )
    int8: Int8Out | None = Field(
        description="Its int8 file and measured accuracy loss; null: `radmatch quantize` never "
        "ran for it"
    )
