"""What every resource's schemas share: ids, text without NUL characters, pages, refusals."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.identifiers import CASE_NUMBER_LENGTH, EXTERNAL_REF_LENGTH, normalise_identifier

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


def identifier(what: str, max_length: int) -> AfterValidator:
    """Validation to an identifier's one spelling (app.core.identifiers); None passes, so that
    optional query parameters can use it."""

    def normalised(text: str | None) -> str | None:
        if text is None:
            return None
        return normalise_identifier(text, what=what, max_length=max_length)

    return AfterValidator(normalised)


ExternalRef = identifier("external_ref", EXTERNAL_REF_LENGTH)


CaseNumber = identifier("case number", CASE_NUMBER_LENGTH)


class Page(BaseModel, Generic[Item]):
    """One page of a listing (app.api.paging)."""

    items: list[Item]
    total: int
    limit: int
    offset: int


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
    429: "The server is decoding other large images; try again after Retry-After seconds",
    503: "The case database is unavailable, or no model is active; try again later",
}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of the refusals a route can answer with: JSON with a `detail`."""
    return {
        status: {"model": Invalid if status == 422 else Problem, "description": REFUSALS[status]}
        for status in statuses
    }


class Limits(BaseModel):
    max_upload_bytes: int
    max_search_k: int
    max_pixels: int
    max_decode_bytes: int = Field(
        description="The most memory one image's decode may need, estimated from its header: "
        "about 16 bytes per pixel for 8-bit grey, 34 for colour"
    )


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: str
