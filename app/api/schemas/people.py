"""People and their images."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas.common import (
    EXTERNAL_REF_LENGTH,
    ExternalRef,
    OptionalText,
    Page,
    Sex,
    Text,
)


class PersonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_ref: Annotated[Text, ExternalRef] = Field(
        min_length=1,
        max_length=EXTERNAL_REF_LENGTH,
        description="A missing-person, case or record number: compared after Unicode NFKC and "
        "with surrounding spaces removed; case matters",
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
