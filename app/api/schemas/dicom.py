"""DICOM exchange: the application entities allowed to send, and a case's inbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.schemas.common import RowId, Text


class DicomSourceCreate(BaseModel):
    """A calling AE title allowed to send by C-STORE, and where its images go: exactly one of
    `case_id` (the case's inbox) and `issuer` (the gallery, people by PatientID under it)."""

    model_config = ConfigDict(extra="forbid")

    ae_title: Text = Field(min_length=1, max_length=16, description="The sender's AE title")
    case_id: RowId | None = None
    issuer: Text | None = Field(default=None, min_length=1, max_length=64)
    description: Text = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def one_destination(self) -> DicomSourceCreate:
        if (self.case_id is None) == (self.issuer is None):
            raise ValueError(
                "give exactly one of case_id (a case's inbox) and issuer (the gallery)"
            )
        return self


class DicomSourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    ae_title: str
    case_id: int | None
    issuer: str | None
    description: str
    created_at: datetime
    revoked_at: datetime | None


class InboxItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    case_id: int
    sha256: str
    size_bytes: int
    sop_instance_uid: str | None
    image_metadata: dict[str, Any]
    received_via: str
    sender: str
    received_at: datetime
