"""Marks and measurements an examiner makes on a comparison's two images (app/cases/marks.py):
points in the originals' pixels, origin top left, the image unflipped."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.schemas.common import Text

MAX_MARKS = 50
MAX_MEASUREMENTS = 50
POINTS = {"distance": 2, "angle": 3}


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: float = Field(ge=0, allow_inf_nan=False, description="Pixels from the left edge")
    y: float = Field(ge=0, allow_inf_nan=False, description="Pixels from the top edge")


class Mark(BaseModel):
    """A numbered feature placed on both images: the same feature seen on each."""

    model_config = ConfigDict(extra="forbid")

    number: int = Field(ge=1, le=99)
    label: Text = Field(min_length=1, max_length=200, description="What the feature is")
    query: Point
    candidate: Point


class MeasurementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: Literal["query", "candidate"]
    kind: Literal["distance", "angle"]
    points: list[Point] = Field(
        description="Two for a distance; three for an angle, measured at the middle one"
    )
    label: Text = Field(default="", max_length=200)

    @model_validator(mode="after")
    def points_fit_the_kind(self) -> MeasurementIn:
        wanted = POINTS[self.kind]
        if len(self.points) != wanted:
            raise ValueError(f"a {self.kind} takes {wanted} points, not {len(self.points)}")
        return self


class Measurement(MeasurementIn):
    value: float = Field(description="Computed from the points and the image's pixel spacing")
    unit: Literal["mm", "px", "°"] = Field(
        description="mm where the image's pixel spacing is known, else px; ° for an angle"
    )
    pixel_spacing_mm: float | None = Field(description="The spacing the value was computed with")


class FindingsIn(BaseModel):
    """The marks and measurements sent with a conclusion."""

    candidate_image_id: int | None = Field(
        default=None,
        ge=1,
        description="The candidate's image the marks and measurements were made on; needed "
        "with any mark or a measurement on the candidate",
    )
    marks: list[Mark] = Field(default_factory=list, max_length=MAX_MARKS)
    measurements: list[MeasurementIn] = Field(default_factory=list, max_length=MAX_MEASUREMENTS)

    @model_validator(mode="after")
    def numbers_are_unique(self) -> FindingsIn:
        numbers = [mark.number for mark in self.marks]
        if len(set(numbers)) != len(numbers):
            raise ValueError("each mark needs a number of its own")
        return self
