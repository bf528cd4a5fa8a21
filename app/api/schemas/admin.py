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
